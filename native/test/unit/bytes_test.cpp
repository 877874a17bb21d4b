// The byte buffer the kernel copies file data into: page-aligned from a page up, and std::vector<char>'s
// semantics where the code relies on them.
#include "core/bytes.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace walb {
namespace {

bool onPage(const char* p) { return reinterpret_cast<uintptr_t>(p) % kPageBytes == 0; }

TEST(Bytes, APageOrMoreStartsOnAPageBoundaryAndStaysThereAsItGrows) {
    for (size_t n : {size_t(4096), size_t(4097), size_t(1) << 20, (size_t(4) << 20) + 16}) {
        Bytes b(n);
        EXPECT_TRUE(onPage(b.data())) << n;
    }
    Bytes grown;
    for (int i = 0; i < 100; i++) {
        const std::string piece(1000, char('a' + i % 26));
        grown.insert(grown.end(), piece.begin(), piece.end());
        if (grown.capacity() >= kPageBytes) {
            EXPECT_TRUE(onPage(grown.data())) << grown.size();
        }
    }
    EXPECT_EQ(grown.size(), 100000u);
    EXPECT_EQ(grown[99999], char('a' + 99 % 26));
    Bytes copy(grown);
    EXPECT_TRUE(onPage(copy.data()));
}

TEST(Bytes, ResizeZeroFillsNewBytesAndKeepsTheOld) {
    Bytes b(3, 'x');
    b.resize(6000);
    EXPECT_EQ(std::string(b.begin(), b.begin() + 3), "xxx");
    for (size_t i = 3; i < b.size(); i++) ASSERT_EQ(b[i], 0) << i;
    b.resize(2);
    b.resize(4);
    EXPECT_EQ(std::string(b.begin(), b.end()), std::string("xx\0\0", 4)) << "bytes cut off come back zero";
}

TEST(Bytes, CopiesAreDeepAndMovesLeaveTheSourceEmpty) {
    Bytes a(5000, 'a');
    Bytes b = a;
    b[0] = 'b';
    EXPECT_EQ(a[0], 'a');
    Bytes c = std::move(b);
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(c[0], 'b');
    EXPECT_NE(a, c);
    a[0] = 'b';
    EXPECT_EQ(a, c);
}

TEST(Bytes, InsertsInTheMiddleAndFromASinglePassStream) {
    const std::string outer = "head-tail";
    Bytes b(outer.begin(), outer.end());
    const std::string mid = "MID-";
    b.insert(b.begin() + 5, mid.begin(), mid.end());
    EXPECT_EQ(std::string(b.begin(), b.end()), "head-MID-tail");

    std::istringstream in("streamed bytes");
    Bytes s{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    EXPECT_EQ(std::string(s.begin(), s.end()), "streamed bytes");
}

}  // namespace
}  // namespace walb
