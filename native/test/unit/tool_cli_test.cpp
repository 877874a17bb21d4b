// walb-tool's frame (native/src/tool): sizes as operators type them, the figures of its progress line, and
// JSON indented as the TypeScript tools print it.
#include <gtest/gtest.h>

#include "tool/cli.hpp"
#include "tool/json.hpp"

namespace walb::tool {

TEST(ToolCli, ParseSizeTakesUnitsInAnyCaseWithOrWithoutB) {
    EXPECT_EQ(parseSize("4096", "x"), 4096u);
    EXPECT_EQ(parseSize("64k", "x"), 64u << 10);
    EXPECT_EQ(parseSize("64KiB", "x"), 64u << 10);
    EXPECT_EQ(parseSize(" 200 MB ", "x"), 200u << 20);
    EXPECT_EQ(parseSize("1.5G", "x"), 3ull << 29);
    EXPECT_EQ(parseSize("2t", "x"), 2ull << 40);
}

TEST(ToolCli, ParseSizeRefusesWhatIsNotASizeAndNamesTheOption) {
    for (const char* bad : {"", "big", "-1", "1.", "64Q", "64 K B", "1e3"}) {
        try {
            parseSize(bad, "--size");
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const UsageError& e) {
            EXPECT_NE(std::string(e.what()).find("--size: '"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(parseSize("9000P", "--size"), UsageError);  // beyond 2^53 bytes
}

TEST(ToolCli, ProgressFiguresAreThoseOfTheOtherTools) {
    EXPECT_EQ(formatBytes(300), "300 B");
    EXPECT_EQ(formatBytes(1536), "1.50 KiB");
    EXPECT_EQ(progressLine("full-backup", 256 << 20, 1 << 30, 4),
              "full-backup: 256.0 MiB of 1.00 GiB, 25.0%, 64.0 MiB/s, ETA 12s");
    EXPECT_EQ(progressLine("x", 0, 100, 0), "x: 0 B of 100 B, 0.0%");
    EXPECT_EQ(formatDuration(75), "1m15s");
    EXPECT_EQ(formatDuration(3700), "1h01m");
}

TEST(ToolJson, IndentsAsJsonStringifyAndKeepsFieldOrder) {
    Json j = Json::object()
                 .set("b", 1)
                 .set("a", Json::array().push("x").push(true))
                 .set("empty", Json::array())
                 .set("o", Json::object());
    EXPECT_EQ(j.dump(),
              "{\n  \"b\": 1,\n  \"a\": [\n    \"x\",\n    true\n  ],\n  \"empty\": [],\n  \"o\": {}\n}");
    EXPECT_EQ(j.dump(0), "{\"b\":1,\"a\":[\"x\",true],\"empty\":[],\"o\":{}}");
}

TEST(ToolJson, NumbersBeyondTwoToThe53AreStringsAndTextIsEscaped) {
    EXPECT_EQ(Json(uint64_t(1) << 53).dump(), "\"9007199254740992\"");
    EXPECT_EQ(Json((uint64_t(1) << 53) - 1).dump(), "9007199254740991");
    EXPECT_EQ(Json("a\"b\\c\n\x01").dump(), "\"a\\\"b\\\\c\\n\\u0001\"");
}

}  // namespace walb::tool
