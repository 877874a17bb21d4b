#include "core/stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

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

// A file of packs: a 16-byte header holding the size of the data after it, then the data.
Bytes packFile(const std::vector<size_t>& sizes, std::vector<Bytes>& datas) {
    Bytes f;
    for (size_t i = 0; i < sizes.size(); i++) {
        Bytes h(16, 0);
        std::memcpy(h.data(), &sizes[i], sizeof(size_t));
        f.insert(f.end(), h.begin(), h.end());
        datas.push_back(test::bytes(sizes[i], int(i) + 1));
        f.insert(f.end(), datas.back().begin(), datas.back().end());
    }
    return f;
}

size_t sizeIn(const char* header) {
    size_t n;
    std::memcpy(&n, header, sizeof(n));
    return n;
}

TEST(PackFileReader, GivesEachPacksHeaderAndDataThenEndsAtThePackBoundary) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    std::vector<Bytes> datas;
    test::writeFile(path, packFile({100, 0, 70000, 5}, datas));
    File in(path, File::Mode::Read);
    PackFileReader r(in, 0, 16, 2);
    char h[16];
    std::vector<SharedSpan> held;  // more packs held than the pool has slots: each keeps its bytes
    for (size_t i = 0; i < datas.size(); i++) {
        ASSERT_TRUE(r.readHeader(h, "a header"));
        const size_t n = sizeIn(h);
        ASSERT_EQ(n, datas[i].size());
        if (i == 1) {
            std::vector<char> out(n);
            r.read(out.data(), n, "data");
        } else {
            held.push_back(r.readShared(n, "data"));
        }
    }
    EXPECT_FALSE(r.readHeader(h, "a header"));
    ASSERT_EQ(held.size(), 3u);
    for (size_t i = 0; i < held.size(); i++) {
        const Bytes& want = datas[i == 0 ? 0 : i + 1];
        ASSERT_EQ(held[i].size, want.size());
        EXPECT_TRUE(std::equal(want.begin(), want.end(), held[i].data));
        EXPECT_EQ(uintptr_t(held[i].data) % kPageBytes, (i == 0   ? 16u
                                                         : i == 1 ? 16u * 3 + 100
                                                                  : 16u * 4 + 70100) %
                                                            kPageBytes)
            << "placed as in the file";
    }
}

TEST(PackFileReader, APackAppendedAfterTheEndWasSeenIsReadNext) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    std::vector<Bytes> datas;
    auto f = packFile({300, 200}, datas);
    test::writeFile(path, Bytes(f.begin(), f.begin() + 16 + 300));
    File in(path, File::Mode::Read);
    PackFileReader r(in, 0, 16, 2);
    char h[16];
    ASSERT_TRUE(r.readHeader(h, "a header"));
    r.readShared(sizeIn(h), "data");
    EXPECT_FALSE(r.readHeader(h, "a header"));
    test::writeFile(path, f);
    ASSERT_TRUE(r.readHeader(h, "a header"));
    auto d = r.readShared(sizeIn(h), "data");
    EXPECT_TRUE(std::equal(datas[1].begin(), datas[1].end(), d.data));
}

TEST(PackFileReader, AFileEndingInsideAHeaderOrItsDataIsTruncatedNamingWhat) {
    test::TempDir dir;
    const std::string path = dir.path("f");
    std::vector<Bytes> datas;
    const auto f = packFile({300, 200}, datas);
    char h[16];
    std::string msg;
    test::writeFile(path, Bytes(f.begin(), f.begin() + 16 + 300 + 10));
    {
        File in(path, File::Mode::Read);
        PackFileReader r(in, 0, 16, 2);
        ASSERT_TRUE(r.readHeader(h, "a header"));
        r.readShared(sizeIn(h), "data");
        EXPECT_EQ(test::errorCodeOf([&] { r.readHeader(h, "a header"); }, &msg), ErrorCode::Truncated);
        EXPECT_NE(msg.find("file ends inside a header"), std::string::npos) << msg;
    }
    test::writeFile(path, Bytes(f.begin(), f.begin() + 16 + 300 + 16 + 150));
    File in(path, File::Mode::Read);
    PackFileReader r(in, 0, 16, 2);
    ASSERT_TRUE(r.readHeader(h, "a header"));
    r.readShared(sizeIn(h), "data");
    ASSERT_TRUE(r.readHeader(h, "a header"));
    EXPECT_EQ(test::errorCodeOf([&] { r.readShared(sizeIn(h), "the data"); }, &msg), ErrorCode::Truncated);
    EXPECT_NE(msg.find("file ends inside the data"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(200 bytes needed, 150 present)"), std::string::npos) << msg;
    // A size claimed beyond the file is refused before a buffer is sized from it.
    EXPECT_EQ(test::errorCodeOf([&] { r.readShared(size_t(1) << 40, "the data"); }, &msg),
              ErrorCode::Truncated);
}

}  // namespace
}  // namespace walb
