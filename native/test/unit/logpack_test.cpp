#include "core/logpack.hpp"

#include <gtest/gtest.h>

#include "core/checksum.hpp"
#include "support.hpp"

namespace walb {
namespace {

constexpr uint32_t kSalt = 0x5a17;

void reseal(Logpack& p) {
    p.header().checksum = 0;
    p.header().checksum = checksum(p.headerBlock().data(), p.pbs(), p.salt());
}

// A pack at lsid 100 with a write of 3 LB, a discard, and a write of 1 LB.
Logpack samplePack(uint32_t pbs = 512) {
    LogpackBuilder b(pbs, kSalt, 0, 0, 100);
    const auto a = test::bytes(3 * 512, 1), c = test::bytes(512, 2);
    EXPECT_TRUE(b.addWrite(8, 3, a.data()));
    EXPECT_TRUE(b.addDiscard(64, 1000));
    EXPECT_TRUE(b.addWrite(2, 1, c.data()));
    return b.take();
}

TEST(Logpack, BuiltPackValidatesAtItsLsidWithGoodData) {
    const Logpack p = samplePack();
    EXPECT_EQ(p.checkHeader(100), "");
    EXPECT_EQ(p.nRecords(), 3);
    EXPECT_EQ(p.header().total_io_size, 4);
    EXPECT_EQ(p.nextLsid(), 105u);
    EXPECT_EQ(p.firstBadRecord(), 3u);
    EXPECT_EQ(p.record(1).lsid_local, 4) << "a discard sits where the next data would start";
    EXPECT_TRUE(p.record(1).isDiscard());
}

TEST(Logpack, BuiltPackAt4096BlockSizeRoundsRecordsUpToWholeBlocks) {
    const Logpack p = samplePack(4096);
    EXPECT_EQ(p.checkHeader(100), "");
    EXPECT_EQ(p.header().total_io_size, 2);
    EXPECT_EQ(p.record(2).lsid_local, 2);
}

TEST(Logpack, HeaderAtAnotherLsidIsInvalid) {
    EXPECT_NE(samplePack().checkHeader(101).find("was expected"), std::string::npos);
}

TEST(Logpack, HeaderWithAWrongChecksumOrSaltIsInvalid) {
    Logpack p = samplePack();
    p.record(0).offset++;
    EXPECT_EQ(p.checkHeader(100), "header checksum mismatch");
    reseal(p);
    EXPECT_EQ(p.checkHeader(100), "");
    Logpack other(512, kSalt + 1);
    other.headerBlock() = p.headerBlock();
    EXPECT_EQ(other.checkHeader(100), "header checksum mismatch");
}

TEST(Logpack, RecordsWhoseDataIsNotContiguousAreInvalid) {
    Logpack p = samplePack();
    p.record(2).lsid_local++;
    p.record(2).lsid++;
    reseal(p);
    EXPECT_NE(p.checkHeader(100).find("not contiguous"), std::string::npos) << p.checkHeader(100);
}

TEST(Logpack, TotalIoSizeThatDisagreesWithTheRecordsIsInvalid) {
    Logpack p = samplePack();
    p.header().total_io_size++;
    reseal(p);
    EXPECT_EQ(p.checkHeader(100), "total_io_size does not match the records");
}

// Found by logpack_header_fuzz: records flagged PADDING beyond n_padding passed validation, and shrinking
// such a pack (which recounts n_padding) wrote a header that no longer validated.
TEST(Logpack, PaddingRecordsOutnumberingNPaddingAreInvalid) {
    Logpack p = samplePack();
    p.record(0).flags |= kLogRecordPadding;
    reseal(p);
    EXPECT_EQ(p.checkHeader(100), "n_padding 0 does not match the 1 padding records");
}

TEST(Logpack, AFlippedDataByteIsFoundInItsRecord) {
    Logpack p = samplePack();
    p.data()[3 * 512] ^= 1;  // the data of record 2
    EXPECT_EQ(p.firstBadRecord(), 2u);
    p.data()[3 * 512] ^= 1;
    p.data()[3 * 512 - 1] ^= 1;  // the last byte of record 0's data
    EXPECT_EQ(p.firstBadRecord(), 0u);
}

TEST(Logpack, ShrinkingATornPackKeepsAValidPrefix) {
    Logpack p = samplePack();
    p.data()[3 * 512] ^= 1;
    const size_t good = p.firstBadRecord();
    ASSERT_EQ(good, 2u);
    p.shrink(good);
    EXPECT_EQ(p.checkHeader(100), "");
    EXPECT_EQ(p.nRecords(), 2);
    EXPECT_EQ(p.header().total_io_size, 3);
    EXPECT_EQ(p.data().size(), 3u * 512);
    EXPECT_EQ(p.nextLsid(), 104u);
    EXPECT_EQ(p.record(2).flags, 0u) << "cut records are zeroed";
}

TEST(Logpack, ShrinkingToNothingLeavesAnEmptyHeader) {
    Logpack p = samplePack();
    p.shrink(0);
    EXPECT_EQ(p.nRecords(), 0);
    EXPECT_EQ(p.header().total_io_size, 0);
    EXPECT_EQ(p.checkHeader(100), "");
}

TEST(Logpack, EndBlockChecksumIsTheComplementOfTheSalt) {
    Logpack p(512, kSalt);
    p.makeEnd();
    EXPECT_TRUE(p.isEnd());
    EXPECT_EQ(p.header().checksum, ~kSalt);
}

TEST(LogpackBuilder, PadsAtTheRingEndSoThatNoIoWraps) {
    const uint64_t ring = 64;
    LogpackBuilder b(512, kSalt, ring, 0, ring - 3);  // header at 61, two blocks left before the end
    const auto d = test::bytes(4 * 512, 4);
    ASSERT_TRUE(b.addWrite(0, 4, d.data()));
    const Logpack p = b.take();
    EXPECT_EQ(p.checkHeader(ring - 3), "");
    ASSERT_EQ(p.nRecords(), 2);
    EXPECT_TRUE(p.record(0).isPadding());
    EXPECT_EQ(p.header().n_padding, 1);
    EXPECT_EQ(p.record(1).lsid % ring, 0u) << "the write starts at the ring start";
    EXPECT_EQ(p.firstBadRecord(), 2u);
}

TEST(LogpackBuilder, AFlushStartsANewPack) {
    LogpackBuilder b(512, kSalt, 0, 0, 0);
    const auto d = test::bytes(512, 5);
    ASSERT_TRUE(b.addWrite(0, 1, d.data()));
    EXPECT_FALSE(b.addWrite(1, 1, d.data(), true));
    const Logpack first = b.take();
    EXPECT_TRUE(b.addWrite(1, 1, d.data(), true));
    EXPECT_EQ(b.take().lsid(), first.nextLsid());
}

TEST(LogpackBuilder, APackStopsAtMaxLogpackAndAtAFullHeader) {
    LogpackBuilder sized(512, kSalt, 0, 8, 0);
    const auto d = test::bytes(8 * 512, 6);
    ASSERT_TRUE(sized.addWrite(0, 6, d.data()));
    EXPECT_FALSE(sized.addWrite(8, 3, d.data())) << "6 + 3 blocks exceed max_logpack 8";

    LogpackBuilder counted(512, kSalt, 0, 0, 0);
    for (uint32_t i = 0; i < maxLogRecords(512); i++) ASSERT_TRUE(counted.addDiscard(i * 8, 8));
    EXPECT_FALSE(counted.addDiscard(1000, 8)) << "15 records fill a 512-byte header";
    EXPECT_EQ(counted.take().checkHeader(0), "");
}

TEST(LogpackBuilder, RejectsWritesOfZeroOrMoreThan65535Blocks) {
    LogpackBuilder b(512, kSalt, 0, 0, 0);
    EXPECT_EQ(test::errorCodeOf([&] { b.addWrite(0, 0, nullptr); }), ErrorCode::InvalidArgument);
    EXPECT_EQ(test::errorCodeOf([&] { b.addWrite(0, 65536, nullptr); }), ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace walb
