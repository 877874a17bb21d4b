#include "core/checksum.hpp"

#include <gtest/gtest.h>

#include "core/bytes.hpp"
#include "core/format.hpp"
#include "support.hpp"

namespace walb {
namespace {

// The definition of docs/formats.md §0.2, word by word.
uint32_t referenceChecksum(const Bytes& b, uint32_t salt) {
    uint32_t sum = salt;
    for (size_t i = 0; i < b.size(); i += 4) {
        uint32_t w = 0;
        std::memcpy(&w, b.data() + i, std::min<size_t>(4, b.size() - i));
        sum += w;
    }
    return ~sum + 1;
}

TEST(Checksum, MatchesTheWordSumDefinitionForEveryLengthAndTail) {
    for (size_t len = 0; len < 200; len++) {
        const auto b = test::bytes(len, len);
        EXPECT_EQ(checksum(b.data(), b.size(), 0x12345678u), referenceChecksum(b, 0x12345678u)) << len;
    }
}

TEST(Checksum, OfNothingIsTheNegatedSalt) { EXPECT_EQ(checksum("", 0, 5), uint32_t(-5)); }

TEST(Checksum, PartialSumsOverPiecesEqualTheSumOverTheWhole) {
    const auto b = test::bytes(4096, 1);
    uint32_t sum = checksumPartial(7, b.data(), 1000);
    sum = checksumPartial(sum, b.data() + 1000, 3096);
    EXPECT_EQ(checksumFinish(sum), checksum(b.data(), b.size(), 7));
}

TEST(Checksum, WdiffHeaderWorkedExampleOfTheFormatDocGives0x7110fbb4) {
    DiffFileHeaderRaw h{};
    h.version = kWdiffVersion;
    h.type = kWdiffTypeSorted;
    const uint8_t uuid[16] = {0x3f, 0x2a, 0x9c, 0x41, 0xd8, 0xb7, 0xe6, 0x50,
                              0xa1, 0xc4, 0xf0, 0xe3, 0x92, 0x5d, 0x7b, 0x18};
    std::memcpy(h.uuid, uuid, 16);
    EXPECT_EQ(checksum(&h, sizeof(h), 0), 0x7110fbb4u);
}

TEST(Checksum, SelfChecksummedBlockVerifiesAndAFlippedBitDoesNot) {
    auto b = test::bytes(512, 2);
    std::memset(b.data(), 0, 4);
    const uint32_t c = checksum(b.data(), b.size(), 9);
    std::memcpy(b.data(), &c, 4);
    EXPECT_TRUE(selfChecksumOk(b.data(), b.size(), 9));
    EXPECT_FALSE(selfChecksumOk(b.data(), b.size(), 10));
    b[100] ^= 1;
    EXPECT_FALSE(selfChecksumOk(b.data(), b.size(), 9));
}

}  // namespace
}  // namespace walb
