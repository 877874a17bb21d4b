#include "bulk/bulk_wire.hpp"

#include <gtest/gtest.h>

#include "support.hpp"

namespace walb::bulk {
namespace {

std::string dataMessage(uint64_t offset, const std::string& data) {
    uint8_t head[kDataHeadMax];
    const size_t h = encodeDataHead(head, offset, data.size());
    return std::string(reinterpret_cast<char*>(head), h) + data;
}

// The message cut at `cuts` (increasing positions), as gRPC may hand it over.
Spans piecesOf(const std::string& m, const std::vector<size_t>& cuts) {
    Spans out;
    size_t at = 0;
    for (size_t c : cuts) {
        out.emplace_back(m.data() + at, c - at);
        at = c;
    }
    out.emplace_back(m.data() + at, m.size() - at);
    return out;
}

std::string joined(const Spans& spans) {
    std::string s;
    for (const auto& [p, n] : spans) s.append(p, n);
    return s;
}

// The receiver parses a message in the pieces gRPC received it in: a cut may fall inside a varint, between
// the head and the bytes, or anywhere in them.
TEST(BulkWire, ADataMessageCutAnywhereParsesToItsOffsetAndBytes) {
    const std::string data(3000, 'x');
    const std::string m = dataMessage(uint64_t(1) << 40, data);
    for (size_t a = 0; a <= m.size(); a++) {
        for (size_t b : {a, a + 1, a + 7, m.size()}) {
            if (b > m.size()) continue;
            const ParsedRequest r = parseRequest(piecesOf(m, {a, b}));
            ASSERT_FALSE(r.isToken);
            EXPECT_EQ(r.offset, uint64_t(1) << 40) << a << "," << b;
            EXPECT_EQ(r.length, data.size());
            EXPECT_EQ(joined(r.data), data) << a << "," << b;
        }
    }
}

TEST(BulkWire, ATokenCutAnywhereParsesWhole) {
    const std::string m = encodeToken("0123456789abcdef");
    for (size_t a = 0; a <= m.size(); a++) {
        const ParsedRequest r = parseRequest(piecesOf(m, {a}));
        EXPECT_TRUE(r.isToken);
        EXPECT_EQ(r.token, "0123456789abcdef");
    }
}

TEST(BulkWire, AMessageInOneBytePiecesParsesAsInOne) {
    const std::string m = dataMessage(512, "some bulk bytes");
    std::vector<size_t> cuts;
    for (size_t i = 1; i < m.size(); i++) cuts.push_back(i);
    const ParsedRequest r = parseRequest(piecesOf(m, cuts));
    EXPECT_EQ(r.offset, 512u);
    EXPECT_EQ(joined(r.data), "some bulk bytes");
}

TEST(BulkWire, ADataMessageShortOfItsBytesIsRefusedWhereverItIsCut) {
    const std::string m = dataMessage(0, std::string(100, 'y'));
    const std::string cutShort = m.substr(0, m.size() - 1);
    for (size_t a = 0; a <= cutShort.size(); a++)
        EXPECT_EQ(test::errorCodeOf([&] { parseRequest(piecesOf(cutShort, {a})); }),
                  ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace walb::bulk
