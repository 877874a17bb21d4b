#include "core/stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/bytes.hpp"
#include "support.hpp"

namespace walb {
namespace {

// A reader sizes its buffer by the file at open: bytes appended later must still be read, in whole.
TEST(BufferedReader, ReadsBytesAppendedAfterItWasOpenedOnAnEmptyFile) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    test::makeFile(path, 0);
    File in(path, File::Mode::Read);
    BufferedReader r(in, 0);
    const auto b = test::bytes(300 << 10, 1);
    test::writeFile(path, b);
    Bytes got(b.size() + 10);
    EXPECT_EQ(r.read(got.data(), 7), 7u);
    EXPECT_EQ(r.read(got.data() + 7, got.size() - 7), b.size() - 7);
    got.resize(b.size());
    EXPECT_EQ(got, b);
    EXPECT_TRUE(r.atEof());
}

TEST(BufferedReader, ReadExactAtTheEndOfAFileIsTruncatedNamingWhatWasRead) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    test::writeFile(path, test::bytes(100, 2));
    File in(path, File::Mode::Read);
    BufferedReader r(in, 40);
    char buf[100];
    std::string msg;
    EXPECT_EQ(test::errorCodeOf([&] { r.readExact(buf, 61, "a thing"); }, &msg), ErrorCode::Truncated);
    EXPECT_NE(msg.find("a thing"), std::string::npos) << msg;
}

// A mapped reader keeps one window mapped: views inside it, across its end, larger than it and at the end of
// the file all give the file's bytes.
TEST(MappedReader, ViewsAnywhereGiveTheFilesBytesWhateverTheWindow) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    const auto b = test::bytes(100000, 3);
    test::writeFile(path, b);
    File in(path, File::Mode::Read);
    MappedReader r(8192);
    ASSERT_TRUE(r.open(in));
    EXPECT_EQ(r.size(), b.size());
    const std::vector<std::pair<uint64_t, size_t>> views = {
        {0, 100}, {100, 5000}, {8000, 500}, {8500, 30000}, {4097, 3}, {99000, 1000}, {0, 100000}};
    for (const auto& [off, len] : views) {
        const char* p = r.view(off, len);
        EXPECT_TRUE(std::equal(p, p + len, b.begin() + off)) << off << "+" << len;
    }
}

TEST(MappedReader, RefusesWhatIsNotARegularFile) {
    test::TempDir dir;
    File in(dir.path(""), File::Mode::Read);
    MappedReader r;
    EXPECT_FALSE(r.open(in));
}

}  // namespace
}  // namespace walb
