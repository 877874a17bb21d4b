// The read-ahead thread between a reader and its consumer: order, errors, and a consumer that stops early.
#include "core/read_ahead.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace walb {
namespace {

// A producer of 0, 1, ..., n-1 in batches of `batch`, which throws instead of producing `failAt` (if below
// n).
ReadAhead<int>::Fill counting(int n, int batch, int failAt, int& produced) {
    return [=, &produced](std::vector<int>& out) {
        for (int i = 0; i < batch && produced < n; i++) {
            if (produced == failAt) throw std::runtime_error("bad item");
            out.push_back(produced++);
        }
        return produced < n;
    };
}

TEST(ReadAhead, HandsOutEveryItemInOrderAcrossBatches) {
    int produced = 0;
    ReadAhead<int> ahead(counting(1000, 7, -1, produced));
    int item = -1;
    for (int expected = 0; expected < 1000; expected++) {
        ASSERT_TRUE(ahead.next(item));
        EXPECT_EQ(item, expected);
    }
    EXPECT_FALSE(ahead.next(item));
    EXPECT_FALSE(ahead.next(item)) << "the end stays the end";
}

TEST(ReadAhead, AProducerErrorComesAfterTheItemsBeforeIt) {
    int produced = 0;
    ReadAhead<int> ahead(counting(1000, 7, 500, produced));
    int item = -1, seen = 0;
    EXPECT_THROW(
        {
            while (ahead.next(item)) {
                EXPECT_EQ(item, seen);
                seen++;
            }
        },
        std::runtime_error);
    EXPECT_EQ(seen, 500) << "every item before the failing one, none after";
}

TEST(ReadAhead, AConsumerThatStopsEarlyReleasesTheBlockedProducer) {
    int produced = 0;
    {
        ReadAhead<int> ahead(counting(1 << 20, 4, -1, produced));
        int item = -1;
        ASSERT_TRUE(ahead.next(item));
    }  // the producer waits on a full queue here; dropping the read-ahead must not hang
    EXPECT_LT(produced, 1 << 20) << "the producer stays a few batches ahead, no more";
}

}  // namespace
}  // namespace walb
