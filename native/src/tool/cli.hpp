// The frame of walb-tool, the native command-line tool: subcommands, options, help, exit codes (0 done, 1 the
// operation failed, 2 bad usage) and errors printed with their stable code. It keeps the one style of the
// TypeScript tools (src/common/cli.ts): the same help layout, messages and exit codes.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/ops.hpp"

namespace walb::tool {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Bad usage found after parsing (a value that is not a size, a missing -o): printed with [USAGE], exit 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Option {
    std::string name;         // long name, without "--"
    std::string help;         // what it does (every option has one)
    bool takesValue = false;  // --name VALUE, else a flag
    std::string placeholder;  // the value's name in the help (default: the name in capitals)
    char shortName = 0;       // -o
};
inline Option flag(std::string name, std::string help) {
    return {std::move(name), std::move(help), false, "", 0};
}
inline Option valued(std::string name, std::string placeholder, std::string help, char shortName = 0) {
    return {std::move(name), std::move(help), true, std::move(placeholder), shortName};
}

// The parsed options and positionals of one invocation, with typed reads that throw UsageError.
class Args {
public:
    std::vector<std::string> positionals;
    bool flag(const std::string& name) const { return flags_.count(name) > 0; }
    std::optional<std::string> value(const std::string& name) const;
    std::string required(const std::string& name, const std::string& message) const;
    uint64_t size(const std::string& name, const std::string& dflt) const;  // 64K, 1G, ...
    // A decimal number up to `max` (by default 2^53 - 1, the numbers the TypeScript tools take).
    uint64_t whole(const std::string& name, uint64_t dflt, uint64_t max = (1ull << 53) - 1) const;
    std::optional<uint64_t> lsid(const std::string& name) const;
    double ratio(const std::string& name, double dflt) const;  // 0..1
    std::string choice(const std::string& name, const std::vector<std::string>& choices,
                       const std::string& dflt) const;

private:
    friend class Parser;
    std::map<std::string, std::string> values_;
    std::map<std::string, bool> flags_;
};

struct Command {
    std::string name;  // e.g. "wlog to-wdiff"
    std::string args;  // usage of the positionals, e.g. "IN.wlog... -o OUT.wdiff"
    std::string summary;
    std::vector<Option> options;
    size_t minArgs = 0, maxArgs = SIZE_MAX;
    std::function<void(const Args&)> run;
};

// Runs one invocation and returns the exit code; never throws.
int runCli(const std::string& tool, const std::string& description, const std::vector<Command>& commands,
           const std::vector<std::string>& argv);
std::string usageOf(const std::string& tool, const Command& c);

// Sizes as operators type them: 512, 64k, 64K, 64M, 1G, 1.5G (powers of 1024).
uint64_t parseSize(const std::string& text, const std::string& what);
// 1536 -> "1.50 KiB", 300 -> "300 B".
std::string formatBytes(uint64_t n);
// 75 -> 1m15s, 3700 -> 1h01m.
std::string formatDuration(double sec);
// "label: 256.0 MiB of 1.00 GiB, 25.0%, 64.0 MiB/s, ETA 12s"
std::string progressLine(const std::string& label, uint64_t done, uint64_t total, double elapsedSec);

// A one-line progress indicator on stderr when it is a terminal (or always with `force`), cleared at the end.
class ProgressPrinter {
public:
    ProgressPrinter(std::string label, bool force);
    ~ProgressPrinter() { end(); }
    Progress fn();
    void end();

private:
    std::string label_;
    std::mutex mu_;  // the core may report from more than one thread
    bool active_, tty_, force_, shown_ = false;
    double start_, last_ = 0;
};

double nowSeconds();

}  // namespace walb::tool
