#include "tool/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "core/error.hpp"

#ifndef WALB_VERSION
#error "WALB_VERSION (package.json's version) is defined by the build"
#endif

namespace walb::tool {

namespace {

constexpr uint64_t kMaxSafeInteger = (1ull << 53) - 1;  // sizes and numbers as the TypeScript tools take them

std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

std::string padEnd(const std::string& s, size_t width) {
    return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

std::vector<std::string> splitWords(const std::string& s) {
    std::vector<std::string> words;
    std::istringstream in(s);
    for (std::string w; in >> w;) words.push_back(w);
    return words;
}

std::string placeholderOf(const Option& o) {
    if (!o.placeholder.empty()) return o.placeholder;
    std::string p = o.name;
    for (char& ch : p) ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return p;
}

// `--name VALUE` (or `-s VALUE`) as a usage line shows it.
std::string optionForm(const Option& o, bool preferShort) {
    std::string f = preferShort && o.shortName ? std::string("-") + o.shortName : "--" + o.name;
    return o.takesValue ? f + " " + placeholderOf(o) : f;
}

// Wraps `words` after `head` at 100 columns, continuation lines indented under the first word.
std::vector<std::string> wrapUsage(const std::string& head, const std::vector<std::string>& words) {
    std::vector<std::string> lines;
    std::string line = head;
    for (const std::string& w : words) {
        if (line.size() + 1 + w.size() > 100 && line.find_first_not_of(' ') != std::string::npos) {
            lines.push_back(line);
            line = std::string(std::min<size_t>(head.size(), 40), ' ') + w;
        } else {
            line += " " + w;
        }
    }
    lines.push_back(line);
    return lines;
}

std::string overview(const std::string& tool, const std::string& description,
                     const std::vector<Command>& commands) {
    size_t width = 0;
    for (const Command& c : commands) width = std::max(width, c.name.size());
    std::string s = "usage: " + tool + " COMMAND [OPTIONS] [ARGS]\n       " + tool + " --version\n\n" +
                    description + "\n\ncommands:\n";
    for (const Command& c : commands) s += "  " + padEnd(c.name, width) + "  " + c.summary + "\n";
    return s + "\nRun '" + tool + " COMMAND --help' for the options of a command.";
}

size_t editDistance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) prev[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); j++)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

// The command name closest to what was typed (compared with as many words as the name has), or "" when
// nothing is close enough to be a typo.
std::string closestCommand(const std::vector<Command>& commands, const std::vector<std::string>& argv) {
    std::string best;
    size_t bestDistance = SIZE_MAX;
    for (const Command& c : commands) {
        const size_t n = splitWords(c.name).size();
        std::string typed;
        for (size_t i = 0; i < n && i < argv.size(); i++) typed += (i ? " " : "") + argv[i];
        const size_t d = editDistance(typed, c.name);
        if (d < bestDistance) best = c.name, bestDistance = d;
    }
    return bestDistance <= std::max<size_t>(2, best.size() / 3) ? best : "";
}

void writeOut(FILE* f, const std::string& s) { std::fwrite(s.data(), 1, s.size(), f); }

}  // namespace

// Options as node:util's parseArgs takes them in strict mode, with the same messages.
class Parser {
public:
    explicit Parser(const Command& c) : c_(c) {}
    Args parse(const std::vector<std::string>& rest) {
        Args a;
        for (size_t i = 0; i < rest.size(); i++) {
            const std::string& arg = rest[i];
            if (arg == "--") {
                a.positionals.insert(a.positionals.end(), rest.begin() + i + 1, rest.end());
                break;
            }
            if (arg.rfind("--", 0) == 0) {
                const size_t eq = arg.find('=');
                const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
                const Option& o = find(name, arg);
                if (!o.takesValue) {
                    if (eq != std::string::npos)
                        throw UsageError("Option '--" + name + "' does not take an argument");
                    a.flags_[name] = true;
                } else if (eq != std::string::npos) {
                    a.values_[name] = arg.substr(eq + 1);
                } else {
                    a.values_[name] = nextValue(rest, i, o);
                }
            } else if (arg.size() > 1 && arg[0] == '-') {
                const Option& o = find(std::string(1, arg[1]), arg);
                if (!o.takesValue) {
                    if (arg.size() > 2) throw UsageError("Option '" + arg + "' is not known");
                    a.flags_[o.name] = true;
                } else if (arg.size() > 2) {
                    a.values_[o.name] = arg.substr(2);
                } else {
                    a.values_[o.name] = nextValue(rest, i, o);
                }
            } else {
                a.positionals.push_back(arg);
            }
        }
        return a;
    }

private:
    const Option& find(const std::string& name, const std::string& arg) const {
        for (const Option& o : c_.options)
            if (name.size() == 1 ? o.shortName == name[0] : o.name == name) return o;
        throw UsageError(
            "Unknown option '" + arg.substr(0, arg.find('=')) +
            "'. To specify a positional argument starting with a '-', place it at the end of the "
            "command after '--', as in '-- \"" +
            arg + "\"'");
    }
    static std::string label(const Option& o) {
        return std::string(o.shortName ? std::string("-") + o.shortName + ", " : "") + "--" + o.name;
    }
    static std::string nextValue(const std::vector<std::string>& rest, size_t& i, const Option& o) {
        if (i + 1 >= rest.size()) throw UsageError("Option '" + label(o) + " <value>' argument missing");
        const std::string& v = rest[++i];
        if (v.size() > 1 && v[0] == '-')
            throw UsageError("Option '" + label(o) +
                             " <value>' argument is ambiguous. Did you forget to specify "
                             "the option argument for '--" +
                             o.name +
                             "'? To specify an option argument "
                             "starting with a dash use '--" +
                             o.name + "=-XYZ'.");
        return v;
    }
    const Command& c_;
};

std::optional<std::string> Args::value(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
}

std::string Args::required(const std::string& name, const std::string& message) const {
    auto v = value(name);
    if (!v) throw UsageError(message);
    return *v;
}

uint64_t Args::size(const std::string& name, const std::string& dflt) const {
    return parseSize(value(name).value_or(dflt), "--" + name);
}

// Digits only, at most `max`; nullopt for anything else (signs, spaces, overflow).
static std::optional<uint64_t> parseDecimal(const std::string& v, uint64_t max) {
    if (v.empty() || v.size() > 20 ||
        !std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        return std::nullopt;
    errno = 0;
    const uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (errno == ERANGE || n > max) return std::nullopt;
    return n;
}

uint64_t Args::whole(const std::string& name, uint64_t dflt, uint64_t max) const {
    auto v = value(name);
    if (!v) return dflt;
    auto n = parseDecimal(*v, max);
    if (!n) throw UsageError("--" + name + ": '" + *v + "' is not a whole number");
    return *n;
}

std::optional<uint64_t> Args::lsid(const std::string& name) const {
    auto v = value(name);
    if (!v) return std::nullopt;
    auto n = parseDecimal(*v, kMaxSafeInteger);
    if (!n) throw UsageError("--" + name + ": '" + *v + "' is not an lsid");
    return n;
}

double Args::ratio(const std::string& name, double dflt) const {
    auto v = value(name);
    if (!v) return dflt;
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0' || !(x >= 0 && x <= 1))
        throw UsageError("--" + name + ": '" + *v + "' is not a ratio between 0 and 1");
    return x;
}

std::string Args::choice(const std::string& name, const std::vector<std::string>& choices,
                         const std::string& dflt) const {
    auto v = value(name);
    if (!v) return dflt;
    if (std::find(choices.begin(), choices.end(), *v) != choices.end()) return *v;
    std::string list;
    for (const std::string& c : choices) list += (list.empty() ? "" : ", ") + c;
    throw UsageError("--" + name + ": '" + *v + "' is not one of " + list);
}

std::string usageOf(const std::string& tool, const Command& c) {
    // An option the arguments already show (e.g. "-o OUT.wdiff") is not repeated.
    const std::vector<std::string> argList = splitWords(c.args);
    const std::set<std::string> argWords(argList.begin(), argList.end());
    std::vector<std::string> words;
    if (!c.args.empty()) words.push_back(c.args);
    for (const Option& o : c.options) {
        const bool shown =
            argWords.count("--" + o.name) || (o.shortName && argWords.count(std::string("-") + o.shortName));
        if (!shown) words.push_back("[" + optionForm(o, true) + "]");
    }
    std::vector<std::string> lines = wrapUsage("usage: " + tool + " " + c.name, words);
    lines.insert(lines.end(), {"", c.summary, "", "options:"});
    std::vector<std::pair<std::string, std::string>> rows;
    for (const Option& o : c.options)
        rows.emplace_back(
            (o.shortName ? std::string("-") + o.shortName + ", " : "    ") + optionForm(o, false), o.help);
    rows.emplace_back("-h, --help", "print this help");
    size_t width = 26;
    for (const auto& r : rows) width = std::max(width, r.first.size());
    for (const auto& [f, help] : rows) {
        std::string line = "  " + padEnd(f, width) + "  " + help;
        line.erase(line.find_last_not_of(' ') + 1);
        lines.push_back(line);
    }
    std::string s;
    for (size_t i = 0; i < lines.size(); i++) s += (i ? "\n" : "") + lines[i];
    return s;
}

int runCli(const std::string& tool, const std::string& description, const std::vector<Command>& commands,
           const std::vector<std::string>& argv) {
    const Command* cmd = nullptr;
    size_t cmdWords = 0;
    for (const Command& c : commands) {
        const std::vector<std::string> words = splitWords(c.name);
        bool match = words.size() <= argv.size() && words.size() > cmdWords;
        for (size_t i = 0; match && i < words.size(); i++) match = argv[i] == words[i];
        if (match) cmd = &c, cmdWords = words.size();
    }
    if (!cmd) {
        if (argv.empty() || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help") {
            writeOut(stdout, overview(tool, description, commands) + "\n");
            return argv.empty() ? kExitUsage : kExitOk;
        }
        if (argv[0] == "--version") {
            writeOut(stdout, tool + " " + WALB_VERSION + "\n");
            return kExitOk;
        }
        std::string typed = argv[0] + (argv.size() > 1 ? " " + argv[1] : "");
        const std::string near = closestCommand(commands, argv);
        writeOut(stderr, tool + ": unknown command '" + typed + "'" +
                             (near.empty() ? "" : "; did you mean '" + near + "'?") + " ('" + tool +
                             " --help' lists them)\n");
        return kExitUsage;
    }
    const std::vector<std::string> rest(argv.begin() + cmdWords, argv.end());
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
        std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        writeOut(stdout, usageOf(tool, *cmd) + "\n");
        return kExitOk;
    }
    const std::string prefix = tool + " " + cmd->name + ": ";
    Args args;
    try {
        args = Parser(*cmd).parse(rest);
    } catch (const UsageError& e) {
        writeOut(stderr, prefix + e.what() + "\n\n" + usageOf(tool, *cmd) + "\n");
        return kExitUsage;
    }
    const size_t n = args.positionals.size();
    if (n < cmd->minArgs || n > cmd->maxArgs) {
        writeOut(stderr, prefix + "wrong number of arguments\n\n" + usageOf(tool, *cmd) + "\n");
        return kExitUsage;
    }
    std::string code;
    std::string message;
    try {
        cmd->run(args);
        if (std::fflush(stdout) != 0) throwError(ErrorCode::IoError, "cannot write the output");
        return kExitOk;
    } catch (const UsageError& e) {
        code = "USAGE", message = e.what();
    } catch (const Error& e) {
        code = errorCodeName(e.code()), message = e.what();
    } catch (const std::exception& e) {
        code = "INTERNAL", message = e.what();
    }
    std::fflush(stdout);
    writeOut(stderr, prefix + message + " [" + code + "]\n");
    return code == "USAGE" || code == "INVALID_ARGUMENT" ? kExitUsage : kExitFailed;
}

uint64_t parseSize(const std::string& text, const std::string& what) {
    // digits[.digits] [k|m|g|t|p][[i]b], spaces around, any case
    auto bad = [&] {
        return UsageError(what + ": '" + text + "' is not a size (examples: 4096, 64K, 200M, 1G)");
    };
    size_t i = 0;
    auto skipSpaces = [&] {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) i++;
    };
    skipSpaces();
    const size_t numBegin = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) i++;
    if (i == numBegin) throw bad();
    if (i < text.size() && text[i] == '.') {
        const size_t frac = ++i;
        while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) i++;
        if (i == frac) throw bad();
    }
    const double number = std::strtod(text.substr(numBegin, i - numBegin).c_str(), nullptr);
    skipSpaces();
    double unit = 1;
    if (i < text.size()) {
        const char* units = "kmgtp";
        const char* u = std::strchr(units, std::tolower(static_cast<unsigned char>(text[i])));
        if (u && *u) {
            unit = std::ldexp(1.0, 10 * static_cast<int>(u - units + 1));
            i++;
        }
    }
    if (i < text.size() && std::tolower(static_cast<unsigned char>(text[i])) == 'i') {
        i++;
        if (i >= text.size() || std::tolower(static_cast<unsigned char>(text[i])) != 'b') throw bad();
    }
    if (i < text.size() && std::tolower(static_cast<unsigned char>(text[i])) == 'b') i++;
    skipSpaces();
    if (i != text.size()) throw bad();
    const double bytes = std::round(number * unit);
    if (!(bytes <= static_cast<double>(kMaxSafeInteger)))
        throw UsageError(what + ": '" + text + "' is too large");
    return static_cast<uint64_t>(bytes);
}

std::string formatBytes(uint64_t n) {
    static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int i = 0;
    while (v >= 1024 && i < 4) v /= 1024, i++;
    if (i == 0) return std::to_string(n) + " B";
    return fixed(v, v < 10 ? 2 : 1) + " " + units[i];
}

std::string formatDuration(double sec) {
    const uint64_t s = static_cast<uint64_t>(std::ceil(sec));
    auto pad2 = [](uint64_t v) { return (v < 10 ? "0" : "") + std::to_string(v); };
    if (s < 60) return std::to_string(s) + "s";
    if (s < 3600) return std::to_string(s / 60) + "m" + pad2(s % 60) + "s";
    return std::to_string(s / 3600) + "h" + pad2((s % 3600) / 60) + "m";
}

std::string progressLine(const std::string& label, uint64_t done, uint64_t total, double elapsedSec) {
    std::string line =
        label + ": " + (total > 0 ? formatBytes(done) + " of " + formatBytes(total) : formatBytes(done));
    if (total > 0)
        line += ", " + fixed(100.0 * static_cast<double>(done) / static_cast<double>(total), 1) + "%";
    const double rate = elapsedSec > 0 ? static_cast<double>(done) / elapsedSec : 0;
    if (rate > 0) {
        line += ", " + formatBytes(static_cast<uint64_t>(std::llround(rate))) + "/s";
        if (total > done) line += ", ETA " + formatDuration(static_cast<double>(total - done) / rate);
    }
    return line;
}

double nowSeconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

ProgressPrinter::ProgressPrinter(std::string label, bool force)
    : label_(std::move(label)), tty_(isatty(2) == 1), force_(force), start_(nowSeconds()) {
    active_ = force_ || tty_;
}

Progress ProgressPrinter::fn() {
    if (!active_) return nullptr;
    return [this](uint64_t done, uint64_t total) {
        // The core reports per pack or batch, thousands of times a second: redraw ten times a second, and at
        // the end.
        std::lock_guard<std::mutex> lk(mu_);
        const double now = nowSeconds();
        if (shown_ && now - last_ < 0.1 && !(total > 0 && done >= total)) return;
        last_ = now;
        writeOut(stderr, "\r" + progressLine(label_, done, total, now - start_) + (tty_ ? "\x1b[K" : "   "));
        shown_ = true;
    };
}

void ProgressPrinter::end() {
    std::lock_guard<std::mutex> lk(mu_);
    if (shown_) writeOut(stderr, force_ && !tty_ ? "\n" : "\r\x1b[K");
    shown_ = false;
}

}  // namespace walb::tool
