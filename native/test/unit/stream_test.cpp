#include "core/stream.hpp"

#include <gtest/gtest.h>

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
    std::vector<char> got(b.size() + 10);
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

}  // namespace
}  // namespace walb
