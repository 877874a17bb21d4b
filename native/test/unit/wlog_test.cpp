#include "core/wlog.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "core/bytes.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint32_t kSalt = 77;

struct Written {
    std::vector<Logpack> packs;
    uint64_t end = 0;
};

// Five packs from lsid 40 with writes and discards, written to `path`.
Written writeSample(const std::string& path, uint32_t pbs = 512) {
    WlogHeader h;
    h.pbs = pbs;
    h.salt = kSalt;
    h.beginLsid = 40;
    WlogWriter w(path, h);
    LogpackBuilder b(pbs, kSalt, 0, 0, 40);
    Written out;
    for (int i = 0; i < 5; i++) {
        const auto d = test::bytes(size_t(i + 1) * 512, i);
        EXPECT_TRUE(b.addWrite(i * 100, i + 1, d.data()));
        EXPECT_TRUE(b.addDiscard(i * 100 + 50, 7));
        out.packs.push_back(b.take());
        w.append(out.packs.back());
    }
    out.end = w.close();
    return out;
}

// A reader of `path` that reads packs by next() or, with `shared`, into pooled buffers by nextShared() (the
// data then copied into the pack): the tests below hold for both ways.
class Reader {
public:
    Reader(const std::string& path, bool shared) : r(path), shared_(shared) {}
    bool next(Logpack& p) {
        if (!shared_) return r.next(p);
        SharedSpan data;
        if (!r.nextShared(p, data)) return false;
        EXPECT_EQ(data.size, size_t(p.header().total_io_size) * p.pbs());
        p.data().assign(data.data, data.data + data.size);
        return true;
    }
    WlogReader r;

private:
    bool shared_;
};

TEST(Wlog, ReaderReturnsThePacksTheWriterWroteThenTheEndBlock) {
    for (bool shared : {false, true}) {
        for (uint32_t pbs : {512u, 4096u}) {
            test::TempDir dir;
            const std::string path = dir.path("a.wlog");
            const Written w = writeSample(path, pbs);
            Reader r(path, shared);
            EXPECT_EQ(r.r.header().pbs, pbs);
            EXPECT_EQ(r.r.header().salt, kSalt);
            EXPECT_EQ(r.r.header().beginLsid, 40u);
            Logpack p;
            for (const Logpack& want : w.packs) {
                ASSERT_TRUE(r.next(p));
                EXPECT_EQ(p.headerBlock(), want.headerBlock());
                EXPECT_EQ(p.data(), want.data());
            }
            EXPECT_FALSE(r.next(p));
            EXPECT_TRUE(r.r.sawEndBlock());
            EXPECT_EQ(r.r.endLsid(), w.end);
        }
    }
}

TEST(Wlog, EndOfFileAtAPackBoundaryEndsTheLogWithoutAnEndBlock) {
    for (bool shared : {false, true}) {
        test::TempDir dir;
        const std::string path = dir.path("a.wlog");
        writeSample(path);
        auto b = test::readFile(path);
        b.resize(b.size() - 512);  // drop the end block
        test::writeFile(path, b);
        Reader r(path, shared);
        Logpack p;
        int n = 0;
        while (r.next(p)) n++;
        EXPECT_EQ(n, 5);
        EXPECT_FALSE(r.r.sawEndBlock());
    }
}

TEST(Wlog, AFlippedDataByteIsCorruptionNamingTheRecord) {
    for (bool shared : {false, true}) {
        test::TempDir dir;
        const std::string path = dir.path("a.wlog");
        writeSample(path);
        auto b = test::readFile(path);
        b[4096 + 512 + 10] ^= 1;  // first pack's data
        test::writeFile(path, b);
        Reader r(path, shared);
        Logpack p;
        std::string msg;
        EXPECT_EQ(test::errorCodeOf([&] { r.next(p); }, &msg), ErrorCode::Corruption);
        EXPECT_NE(msg.find("data checksum mismatch in record 0"), std::string::npos) << msg;
    }
}

TEST(Wlog, AFileEndingInsidePackDataIsTruncated) {
    for (bool shared : {false, true}) {
        test::TempDir dir;
        const std::string path = dir.path("a.wlog");
        writeSample(path);
        auto b = test::readFile(path);
        b.resize(4096 + 512 + 100);
        test::writeFile(path, b);
        Reader r(path, shared);
        Logpack p;
        std::string msg;
        EXPECT_EQ(test::errorCodeOf([&] { r.next(p); }, &msg), ErrorCode::Truncated);
        EXPECT_NE(msg.find("file ends inside logpack data"), std::string::npos) << msg;
    }
}

TEST(Wlog, AFileEndingInsideAPackHeaderIsTruncated) {
    for (bool shared : {false, true}) {
        test::TempDir dir;
        const std::string path = dir.path("a.wlog");
        writeSample(path);
        auto b = test::readFile(path);
        b.resize(4096 + 100);
        test::writeFile(path, b);
        Reader r(path, shared);
        Logpack p;
        std::string msg;
        EXPECT_EQ(test::errorCodeOf([&] { r.next(p); }, &msg), ErrorCode::Truncated);
        EXPECT_NE(msg.find("file ends inside a logpack header"), std::string::npos) << msg;
    }
}

TEST(Wlog, AHeaderWhoseBeginIsNotBelowItsEndIsCorruption) {
    Bytes block(kWlogHeaderSize);
    WlogHeader h;
    h.beginLsid = h.endLsid = 5;
    h.serialize(block.data());
    std::string msg;
    EXPECT_EQ(test::errorCodeOf([&] { WlogHeader::parse(block.data(), "t"); }, &msg), ErrorCode::Corruption);
    EXPECT_NE(msg.find("begin_lsid"), std::string::npos) << msg;
}

TEST(Wlog, WriterRefusesAPackThatDoesNotFollowThePreviousOne) {
    test::TempDir dir;
    WlogHeader h;
    h.salt = kSalt;
    WlogWriter w(dir.path("a.wlog"), h);
    LogpackBuilder b(512, kSalt, 0, 0, 3);
    const auto d = test::bytes(512, 1);
    b.addWrite(0, 1, d.data());
    EXPECT_EQ(test::errorCodeOf([&] { w.append(b.take()); }), ErrorCode::InvalidArgument);
}

TEST(Wlog, AnUncommittedWriterLeavesNoFile) {
    test::TempDir dir;
    const std::string path = dir.path("a.wlog");
    { WlogWriter w(path, WlogHeader{}); }
    EXPECT_FALSE(std::ifstream(path).good());
}

}  // namespace
}  // namespace walb
