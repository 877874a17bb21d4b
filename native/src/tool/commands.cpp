// walb-tool: offline tools on wlog/wdiff files, log devices and images, a native program over the format core
// (docs/architecture.md, "walb-tool"). Each command parses its options, runs one operation of the core on
// this thread (the core starts its own helper threads) and prints a line of result or, with --json, a
// document.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/compress.hpp"
#include "core/error.hpp"
#include "core/file.hpp"
#include "core/ldev.hpp"
#include "core/ops.hpp"
#include "tool/cli.hpp"
#include "tool/json.hpp"

namespace walb::tool {

namespace {

const std::vector<std::string> kCompressions = {"snappy", "none", "zstd", "lz4", "gzip", "lzma"};
const std::vector<std::string> kDiscardModes = {"ignore", "passdown", "zero"};

void print(const std::string& s) { std::fwrite(s.data(), 1, s.size(), stdout); }
void printJson(const Json& j) { print(j.dump() + "\n"); }
void report(const Args& a, const Json& result, const std::string& human) {
    if (a.flag("json"))
        printJson(result);
    else
        print(human + "\n");
}

std::string hex32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%08x", v);
    return buf;
}

std::string mbps(uint64_t bytes, uint64_t ms) {
    if (ms == 0) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MB/s", static_cast<double>(bytes) / 1e3 / static_cast<double>(ms));
    return buf;
}

uint64_t msSince(double t0) { return static_cast<uint64_t>((nowSeconds() - t0) * 1000); }

const Option kJson = flag("json", "machine-readable output");
const Option kProgress = flag("progress", "a progress line on stderr also when it is not a terminal");
Option outputOption(const std::string& help) { return valued("output", "PATH", help, 'o'); }
const Option kDiscard = valued("discard", "MODE", "what a discard does: ignore (default), passdown, zero");
const std::vector<Option> kDiffWriteOptions = {
    valued("compression", "CODEC", "snappy (default), none, zstd, lz4, gzip, lzma"),
    valued("level", "N", "compression level (0 = the codec default)"),
    valued("max-io", "SIZE", "split records longer than this (default 1M; 0 = never)"),
};

std::vector<Option> join(std::vector<Option> a, const std::vector<Option>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::string output(const Args& a) { return a.required("output", "an output is required: -o PATH"); }

// Runs `work` with a progress printer labelled `label` (on a terminal, or always with --progress).
template <class F>
auto withProgress(const std::string& label, const Args& a, F work) {
    ProgressPrinter printer(label, a.flag("progress"));
    auto result = work(printer.fn());
    printer.end();
    return result;
}

DiffWriteOptions diffWriteOptions(const Args& a) {
    DiffWriteOptions w;
    const uint64_t maxIoBytes = a.size("max-io", "1M");
    if (maxIoBytes % kLbSize != 0) throw UsageError("--max-io must be a multiple of 512 bytes");
    w.compression = compressionFromName(a.choice("compression", kCompressions, "snappy"));
    w.level = static_cast<int>(a.whole("level", 0));
    w.maxIoBlocks = static_cast<uint32_t>(maxIoBytes / kLbSize);
    return w;
}

DiscardMode discardMode(const Args& a) {
    return discardModeFromName(a.choice("discard", kDiscardModes, "ignore"));
}

// The counts of a wdiff, added to `into`.
Json statsJson(const DiffStats& s, Json into = Json::object()) {
    return into.set("records", s.records)
        .set("dataBlocks", s.dataBlocks)
        .set("allZeroBlocks", s.allZeroBlocks)
        .set("discardBlocks", s.discardBlocks)
        .set("storedBytes", s.storedBytes)
        .set("fileBytes", s.fileBytes);
}

Json redoJson(const RedoResult& r) {
    return Json::object()
        .set("records", r.records)
        .set("writtenBytes", r.writtenBytes)
        .set("zeroedBytes", r.zeroedBytes)
        .set("discardedBytes", r.discardedBytes)
        .set("beginLsid", r.beginLsid)
        .set("endLsid", r.endLsid);
}

Json wlogHeaderJson(const WlogHeader& h) {
    return Json::object()
        .set("pbs", h.pbs)
        .set("salt", h.salt)
        .set("uuid", uuidHex(h.uuid))
        .set("beginLsid", h.beginLsid)
        .set("endLsid", h.endLsid);
}

const char* recordKind(const LogRecordRaw& r) {
    return r.isPadding() ? "padding" : r.isDiscard() ? "discard" : "normal";
}

Json packJson(const Logpack& p) {
    const LogpackHeaderRaw& h = p.header();
    Json records = Json::array();
    for (uint32_t i = 0; i < h.n_records; i++) {
        const LogRecordRaw& r = p.record(i);
        records.push(Json::object()
                         .set("kind", recordKind(r))
                         .set("offset", uint64_t(r.offset))
                         .set("ioSize", r.io_size)
                         .set("lsid", uint64_t(r.lsid))
                         .set("lsidLocal", r.lsid_local)
                         .set("checksum", r.checksum));
    }
    return Json::object()
        .set("lsid", uint64_t(h.logpack_lsid))
        .set("totalIoSize", h.total_io_size)
        .set("nRecords", h.n_records)
        .set("nPadding", h.n_padding)
        .set("checksum", h.checksum)
        .set("records", std::move(records));
}

std::string packLines(const Logpack& p, bool withRecords) {
    const LogpackHeaderRaw& h = p.header();
    std::string s = "pack lsid " + std::to_string(h.logpack_lsid) + " records " +
                    std::to_string(h.n_records) + " padding " + std::to_string(h.n_padding) +
                    " total_io_size " + std::to_string(h.total_io_size) + " csum " + hex32(h.checksum) + "\n";
    for (uint32_t i = 0; withRecords && i < h.n_records; i++) {
        const LogRecordRaw& r = p.record(i);
        std::string kind = recordKind(r);
        kind.resize(7, ' ');
        s += "  " + kind + " lsid " + std::to_string(r.lsid) + " (+" + std::to_string(r.lsid_local) +
             ") offset " + std::to_string(r.offset) + " size " + std::to_string(r.io_size) + " csum " +
             hex32(r.checksum) + "\n";
    }
    return s;
}

Json superJson(const SuperSector& s) {
    return Json::object()
        .set("pbs", s.pbs)
        .set("salt", s.salt)
        .set("uuid", uuidHex(s.uuid))
        .set("name", s.name)
        .set("ringBufferSize", s.ringBufferPb)
        .set("ringBufferOffset", ringBufferOffsetPb(s.pbs))
        .set("oldestLsid", s.oldestLsid)
        .set("writtenLsid", s.writtenLsid)
        .set("deviceSize", s.deviceSizeLb);
}

Json storedRecordJson(const StoredRecord& r) {
    return Json::object()
        .set("address", r.addr)
        .set("blocks", r.blocks)
        .set("kind", diffKindName(r.kind))
        .set("compression", compressionName(static_cast<Compression>(r.compression)))
        .set("dataOffset", r.dataOffset)
        .set("dataSize", r.dataSize)
        .set("ioOffset", r.ioOffset)
        .set("origBlocks", r.origBlocks);
}

std::string recordLine(const StoredRecord& r, bool indexed) {
    std::string kind = diffKindName(r.kind);
    kind.resize(std::max<size_t>(kind.size(), 7), ' ');
    std::string s = kind + " addr " + std::to_string(r.addr) + " blocks " + std::to_string(r.blocks) + " " +
                    compressionName(static_cast<Compression>(r.compression)) + " data " +
                    std::to_string(r.dataOffset) + "+" + std::to_string(r.dataSize);
    if (indexed && r.kind == DiffKind::Normal)
        s += " image " + std::to_string(r.origBlocks) + " LB at +" + std::to_string(r.ioOffset);
    return s;
}

// ------------------------------------------------------------------------------------------------ commands

void wlogGen(const Args& a) {
    const std::string out = output(a);
    auto lbOf = [&](const std::string& name, const std::string& dflt) {
        const uint64_t bytes = a.size(name, dflt);
        if (bytes % kLbSize != 0 || bytes == 0)
            throw UsageError("--" + name + " must be a positive multiple of 512 bytes");
        return bytes / kLbSize;
    };
    GenOptions g;
    g.deviceSizeLb = lbOf("size", "1G");
    g.amountBytes = a.size("amount", "64M");
    g.pbs = static_cast<uint32_t>(a.whole("pbs", 512));
    g.minIoLb = static_cast<uint32_t>(lbOf("min-io", "512"));
    g.maxIoLb = static_cast<uint32_t>(lbOf("max-io", "32K"));
    g.discardRatio = a.ratio("discard-ratio", 0);
    g.allZeroRatio = a.ratio("allzero-ratio", 0);
    g.overlapRatio = a.ratio("overlap", 0.2);
    g.data = a.choice("data", {"random", "compressible", "zero"}, "random");
    g.lsid = a.lsid("lsid").value_or(0);
    g.ringBufferPb = a.whole("ring", 0);
    g.seed = a.whole("seed", 0);
    if (a.value("salt")) {
        g.hasSalt = true;
        g.salt = static_cast<uint32_t>(a.whole("salt", 0));
    }
    const double t0 = nowSeconds();
    const GenResult r =
        withProgress("generating", a, [&](const Progress& p) { return generateWlog(out, g, p); });
    report(a,
           Json::object()
               .set("beginLsid", r.beginLsid)
               .set("endLsid", r.endLsid)
               .set("packs", r.packs)
               .set("ios", r.ios)
               .set("bytes", r.bytes)
               .set("discards", r.discards)
               .set("paddings", r.paddings)
               .set("salt", r.salt),
           "wrote " + out + ": " + std::to_string(r.ios) + " IOs (" + std::to_string(r.discards) +
               " discards) in " + std::to_string(r.packs) + " logpacks, " + formatBytes(r.bytes) +
               " of data, lsid " + std::to_string(r.beginLsid) + ".." + std::to_string(r.endLsid) + ", " +
               std::to_string(r.paddings) + " padding records, salt " + hex32(r.salt) + " (" +
               std::to_string(msSince(t0)) + " ms)");
}

void wlogShow(const Args& a) {
    const std::string& input = a.positionals[0];
    WlogReader reader(input);
    const WlogHeader& h = reader.header();
    const bool json = a.flag("json");
    // Packs are printed as they are read, so that a log of millions of packs shows in bounded memory; with
    // --json too, as one document {header, packs}.
    if (json)
        print("{\n  \"header\": " + wlogHeaderJson(h).dump(2, 1) + ",\n  \"packs\": [");
    else
        print("wlog " + input + "\n  pbs " + std::to_string(h.pbs) + " salt " + hex32(h.salt) + " uuid " +
              uuidHex(h.uuid) + "\n  begin lsid " + std::to_string(h.beginLsid) + " end lsid " +
              std::to_string(h.endLsid) + "\n");
    uint64_t n = 0, end = h.beginLsid;
    Logpack p;
    while (reader.next(p)) {
        end = p.lsid() + 1 + p.header().total_io_size;
        if (json)
            print(std::string(n ? "," : "") + "\n    " + packJson(p).dump(2, 2));
        else
            print(packLines(p, a.flag("records")));
        n++;
    }
    if (json)
        print(std::string(n ? "\n  " : "") + "]\n}\n");
    else
        print(std::to_string(n) + " logpacks, lsid " + std::to_string(h.beginLsid) + ".." +
              std::to_string(end) + "\n");
}

void wlogVerify(const Args& a) {
    const std::string& input = a.positionals[0];
    const WlogVerifyResult r =
        withProgress("verifying", a, [&](const Progress& p) { return verifyWlog(input, p); });
    report(a,
           Json::object()
               .set("ok", true)
               .set("header", wlogHeaderJson(r.header))
               .set("packs", r.packs)
               .set("records", r.records)
               .set("paddings", r.paddings)
               .set("discards", r.discards)
               .set("dataBytes", r.dataBytes)
               .set("endLsid", r.endLsid)
               .set("endBlock", r.endBlock),
           "ok: " + input + ": " + std::to_string(r.packs) + " logpacks, " + std::to_string(r.records) +
               " records (" + std::to_string(r.discards) + " discards, " + std::to_string(r.paddings) +
               " paddings), " + formatBytes(r.dataBytes) + " of data, lsid " +
               std::to_string(r.header.beginLsid) + ".." + std::to_string(r.endLsid) +
               (r.endBlock ? "" : " (no end block: the file may have been cut at a pack boundary)"));
}

void wlogToWdiff(const Args& a) {
    const std::string out = output(a);
    ConvertOptions c;
    c.write = diffWriteOptions(a);
    c.indexed = a.flag("indexed");
    c.memoryLimit = a.size("memory", "256M");
    const double t0 = nowSeconds();
    const ConvertResult r = withProgress(
        "converting", a, [&](const Progress& p) { return walb::wlogToWdiff(a.positionals, out, c, p); });
    const uint64_t ms = msSince(t0);
    report(a,
           statsJson(r.stats)
               .set("beginLsid", r.beginLsid)
               .set("endLsid", r.endLsid)
               .set("packs", r.packs)
               .set("inputBytes", r.inputBytes)
               .set("spills", r.spills)
               .set("ms", ms),
           "wrote " + out + " (" + (c.indexed ? "indexed" : "sorted") +
               "): " + std::to_string(r.stats.records) + " records from " + std::to_string(r.packs) +
               " logpacks, lsid " + std::to_string(r.beginLsid) + ".." + std::to_string(r.endLsid) + ", " +
               formatBytes(r.stats.fileBytes) + "; " + std::to_string(ms) + " ms, " + mbps(r.inputBytes, ms));
}

void wlogRedo(const Args& a) {
    const std::string &input = a.positionals[0], &image = a.positionals[1];
    const DiscardMode mode = discardMode(a);
    const RedoResult r =
        withProgress("redo", a, [&](const Progress& p) { return redoWlog(input, image, mode, p); });
    report(a, redoJson(r),
           "applied " + input + " to " + image + ": " + std::to_string(r.records) + " records, " +
               formatBytes(r.writtenBytes) + " written, lsid " + std::to_string(r.beginLsid) + ".." +
               std::to_string(r.endLsid));
}

void wlogExtract(const Args& a) {
    const std::string out = output(a);
    const ExtractResult r = extractWlog(a.positionals[0], out, a.lsid("begin").value_or(kInvalidLsid),
                                        a.lsid("end").value_or(kInvalidLsid));
    report(a,
           Json::object()
               .set("beginLsid", r.beginLsid)
               .set("endLsid", r.endLsid)
               .set("packs", r.packs)
               .set("bytes", r.bytes)
               .set("shrunk", r.shrunk),
           "wrote " + out + ": " + std::to_string(r.packs) + " logpacks, lsid " +
               std::to_string(r.beginLsid) + ".." + std::to_string(r.endLsid) +
               (r.shrunk ? " (last pack was torn and shrunk)" : ""));
}

void wlogRestore(const Args& a) {
    const std::string &input = a.positionals[0], &ldev = a.positionals[1];
    const uint64_t end = restoreWlog(input, ldev);
    print("restored " + input + " into " + ldev + "; logs end at lsid " + std::to_string(end) + "\n");
}

void ldevShow(const Args& a) {
    const std::string& path = a.positionals[0];
    const SuperSector s = Ldev(path, false).super();
    report(a, superJson(s),
           "log device " + path + "\n  name '" + s.name + "' uuid " + uuidHex(s.uuid) + " salt " +
               hex32(s.salt) + " pbs " + std::to_string(s.pbs) + "\n  ring buffer " +
               std::to_string(s.ringBufferPb) + " PB at PB " + std::to_string(ringBufferOffsetPb(s.pbs)) +
               "\n  oldest lsid " + std::to_string(s.oldestLsid) + " written lsid " +
               std::to_string(s.writtenLsid) + " device size " + std::to_string(s.deviceSizeLb) + " LB");
}

void wdiffShow(const Args& a) {
    const std::string& input = a.positionals[0];
    DiffFileInfo info;
    {
        File f(input, File::Mode::Read);
        info = readDiffFileHeader(f);
    }
    const bool indexed = info.type == kWdiffTypeIndexed;
    std::unique_ptr<SortedDiffReader> sorted;
    std::unique_ptr<IndexedDiffReader> index;
    if (indexed)
        index = std::make_unique<IndexedDiffReader>(input);
    else
        sorted = std::make_unique<SortedDiffReader>(input);
    const bool json = a.flag("json");
    // Records are printed as they are read, so that a wdiff of millions of records shows in bounded memory;
    // with --json too, as one document {header, records}.
    const Json header =
        Json::object().set("type", indexed ? "indexed" : "sorted").set("uuid", uuidHex(info.uuid));
    if (json)
        print("{\n  \"header\": " + header.dump(2, 1) + ",\n  \"records\": [");
    else
        print("wdiff " + input + "\n  type " + (indexed ? "indexed" : "sorted") + " uuid " +
              uuidHex(info.uuid) + "\n");
    uint64_t n = 0;
    auto show = [&](const StoredRecord& r) {
        if (json)
            print(std::string(n ? "," : "") + "\n    " + storedRecordJson(r).dump(0));
        else
            print(recordLine(r, indexed) + "\n");
        n++;
    };
    if (sorted) {
        std::vector<StoredRecord> pack;
        while (sorted->nextPack(pack))
            for (const StoredRecord& r : pack) show(r);
    } else {
        StoredRecord r;
        while (index->nextStored(r)) show(r);
    }
    print(json ? std::string(n ? "\n  " : "") + "]\n}\n" : std::to_string(n) + " records\n");
}

void wdiffVerify(const Args& a) {
    const std::string& input = a.positionals[0];
    const DiffStats s =
        withProgress("verifying", a, [&](const Progress& p) { return verifyWdiff(input, p); });
    report(a, statsJson(s, Json::object().set("ok", true)),
           "ok: " + input + ": " + std::to_string(s.records) + " records, " +
               formatBytes(s.dataBlocks * kLbSize) + " data, " + formatBytes(s.allZeroBlocks * kLbSize) +
               " all-zero, " + formatBytes(s.discardBlocks * kLbSize) + " discarded");
}

void wdiffMerge(const Args& a) {
    const std::string out = output(a);
    const DiffWriteOptions w = diffWriteOptions(a);
    uint64_t inputBytes = 0;
    for (const std::string& in : a.positionals) inputBytes += File(in, File::Mode::Read).size();
    const double t0 = nowSeconds();
    const DiffStats s =
        withProgress("merging", a, [&](const Progress& p) { return mergeWdiffs(a.positionals, out, w, p); });
    const uint64_t ms = msSince(t0);
    report(a, statsJson(s).set("inputBytes", inputBytes).set("ms", ms),
           "wrote " + out + ": " + std::to_string(s.records) + " records, " + formatBytes(s.fileBytes) +
               " from " + std::to_string(a.positionals.size()) + " wdiffs; " + std::to_string(ms) + " ms, " +
               mbps(inputBytes, ms));
}

void wdiffRedo(const Args& a) {
    const std::string &input = a.positionals[0], &image = a.positionals[1];
    const DiscardMode mode = discardMode(a);
    const RedoResult r =
        withProgress("redo", a, [&](const Progress& p) { return redoWdiff(input, image, mode, p); });
    report(a, redoJson(r),
           "applied " + input + " to " + image + ": " + std::to_string(r.records) + " records, " +
               formatBytes(r.writtenBytes) + " written, " + formatBytes(r.zeroedBytes) + " zeroed");
}

bool allZero(const char* p, size_t n) { return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0); }

void virtFullCat(const Args& a) {
    const std::string out = output(a);
    const std::vector<std::string> diffs(a.positionals.begin() + 1, a.positionals.end());
    VirtualFullImage image(a.positionals[0], diffs);
    const uint64_t size = image.sizeBytes();
    File dst;
    if (out == "-")
        dst.adopt(1, "stdout");
    else
        dst.open(out, File::Mode::CreateTruncate);
    // A regular file, emptied when opened, reads zeros where nothing is written: zero chunks are skipped
    // there and the output stays sparse. A block device gets every chunk at its offset (its old bytes would
    // stay where nothing is written); stdout, a pipe or another character device gets every byte in order.
    struct stat st {};
    const bool regular = out != "-" && fstat(dst.fd(), &st) == 0 && S_ISREG(st.st_mode);
    const bool device = out != "-" && dst.isBlockDevice();
    if (device && dst.size() < size)
        throwError(ErrorCode::InvalidArgument, out + " holds " + std::to_string(dst.size()) +
                                                   " bytes, less than the image's " + std::to_string(size));
    constexpr size_t kChunk = 4 << 20;
    Bytes buf(kChunk);
    ProgressPrinter printer("reading", a.flag("progress"));
    const Progress progress = printer.fn();
    for (uint64_t off = 0; off < size; off += kChunk) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, size - off));
        image.read(off, n, buf.data());
        if (!regular && !device)
            dst.writeAll(buf.data(), n);
        else if (device || !allZero(buf.data(), n))
            dst.pwriteAll(buf.data(), n, off);
        if (progress) progress(off + n, size);
    }
    if (regular) dst.truncate(size);
    if (regular || device) dst.fsync();
}

void hash(const Args& a) {
    const std::string& image = a.positionals[0];
    const std::vector<std::string> diffs(a.positionals.begin() + 1, a.positionals.end());
    HashOptions opt;
    opt.chunkBytes = a.size("chunk", "256K");
    opt.seed = a.whole("seed", 0, UINT64_MAX);  // any 64-bit seed, as the addon takes it
    const std::string seedText = a.value("seed").value_or("0");
    const bool chunks = a.flag("chunks");
    const HashResult r = withProgress("hashing", a, [&](const Progress& p) {
        if (diffs.empty()) return hashImage(image, opt, chunks, p);
        VirtualFullImage v(image, diffs);
        return hashVirtualFull(v, opt, chunks, p);
    });
    const std::string whole = hexString(r.whole, 16);
    if (a.flag("json")) {
        Json j = Json::object()
                     .set("whole", whole)
                     .set("bytes", r.bytes)
                     .set("chunkSize", opt.chunkBytes)
                     .set("seed", seedText);
        if (chunks) {
            Json list = Json::array();
            for (size_t i = 0; i + 16 <= r.chunkHashes.size(); i += 16)
                list.push(hexString(&r.chunkHashes[i], 16));
            j.set("chunks", std::move(list));
        }
        printJson(j);
        return;
    }
    print(whole + "  " + image + (diffs.empty() ? "" : " + " + std::to_string(diffs.size()) + " wdiffs") +
          "\n");
    for (size_t i = 0; i + 16 <= r.chunkHashes.size(); i += 16)
        print(hexString(&r.chunkHashes[i], 16) + "  chunk " + std::to_string(i / 16) + " @" +
              std::to_string(i / 16 * opt.chunkBytes) + "\n");
}

}  // namespace

std::vector<Command> toolCommands() {
    return {
        {"wlog gen",
         "-o OUT.wlog",
         "Generate a random workload as a wlog file (for tests and benchmarks).",
         {outputOption("the wlog file to write"),
          valued("size", "SIZE", "device size the IOs address (default 1G)"),
          valued("amount", "SIZE", "bytes of data to write (default 64M)"),
          valued("pbs", "BYTES", "physical block size, 512 or 4096 (default 512)"),
          valued("min-io", "SIZE", "smallest IO (default 512)"),
          valued("max-io", "SIZE", "largest IO (default 32K, at most 32M-512)"),
          valued("discard-ratio", "RATIO", "share of IOs that are discards (default 0)"),
          valued("allzero-ratio", "RATIO", "share of writes that are all zeros (default 0)"),
          valued("overlap", "RATIO", "share of IOs landing on a recent address (default 0.2)"),
          valued("data", "KIND", "random (default), compressible or zero"),
          valued("lsid", "LSID", "first lsid (default 0)"),
          valued("ring", "PBS",
                 "ring-buffer size in physical blocks: pad as the driver does at its end (default: no ring)"),
          valued("seed", "N", "random seed for a reproducible workload"),
          valued("salt", "N", "log checksum salt (default random)"), flag("json", "print the result as JSON"),
          flag("progress", "print progress even when stderr is not a terminal")},
         0,
         0,
         wlogGen},
        {"wlog show",
         "IN.wlog",
         "Print the header and logpacks of a wlog file.",
         {flag("records", "also print every record"),
          flag("json", "print JSON (header and packs with records)")},
         1,
         1,
         wlogShow},
        {"wlog verify",
         "IN.wlog",
         "Check every header and data checksum of a wlog file.",
         {kJson, kProgress},
         1,
         1,
         wlogVerify},
        {"wlog to-wdiff", "IN.wlog... -o OUT.wdiff",
         "Convert wlogs (consecutive, same device) into one wdiff; the newest write wins.",
         join({outputOption("the wdiff to write"),
               flag("indexed", "write the indexed format (as the proxy does) instead of sorted"),
               valued("memory", "SIZE",
                      "memory for the sorted conversion before spilling to temporary files (default 256M)")},
              join(kDiffWriteOptions, {kJson, kProgress})),
         1, SIZE_MAX, wlogToWdiff},
        {"wlog redo",
         "IN.wlog IMAGE",
         "Apply a wlog to an image file or block device in log order.",
         {kDiscard, kJson, kProgress},
         2,
         2,
         wlogRedo},
        {"wlog extract",
         "LDEV -o OUT.wlog",
         "Copy the logs of a log device into a wlog file (from oldest lsid to the end of valid logs).",
         {outputOption("the file to write"), valued("begin", "LSID", "first lsid (default: the oldest lsid)"),
          valued("end", "LSID", "stop at this lsid (default: end of valid logs)"), kJson},
         1,
         1,
         wlogExtract},
        {"wlog restore",
         "IN.wlog LDEV",
         "Write the logpacks of a wlog into a formatted log device at their lsids (for tests).",
         {},
         2,
         2,
         wlogRestore},
        {"ldev show", "LDEV", "Print the super sector of a log device.", {kJson}, 1, 1, ldevShow},
        {"wdiff show",
         "IN.wdiff",
         "Print the header and records of a wdiff file (sorted or indexed).",
         {kJson},
         1,
         1,
         wdiffShow},
        {"wdiff verify",
         "IN.wdiff",
         "Check every checksum, the order of records and the decompression of a wdiff.",
         {kJson, kProgress},
         1,
         1,
         wdiffVerify},
        {"wdiff merge", "OLDEST.wdiff ... NEWEST.wdiff -o OUT.wdiff",
         "Merge wdiffs, oldest first, into one sorted wdiff; the newest write wins.",
         join({outputOption("the wdiff to write")}, join(kDiffWriteOptions, {kJson, kProgress})), 1, SIZE_MAX,
         wdiffMerge},
        {"wdiff redo",
         "IN.wdiff IMAGE",
         "Apply a wdiff to an image file or block device.",
         {kDiscard, kJson, kProgress},
         2,
         2,
         wdiffRedo},
        {"virt-full-cat",
         "BASE [OLDEST.wdiff ... NEWEST.wdiff] -o OUT|-",
         "Read a base image with wdiffs applied, without changing anything, into a file or stdout.",
         {outputOption("image file to write, or - for stdout"), kProgress},
         1,
         SIZE_MAX,
         virtFullCat},
        {"hash",
         "IMAGE [OLDEST.wdiff ... NEWEST.wdiff]",
         "XXH3-128 of an image (with wdiffs applied virtually), whole and per chunk.",
         {valued("chunk", "SIZE", "chunk size (default 256K)"), valued("seed", "N", "hash seed (default 0)"),
          flag("chunks", "also print one hash per chunk"), kJson, kProgress},
         1,
         SIZE_MAX,
         hash},
    };
}

}  // namespace walb::tool

int main(int argc, char** argv) {
    static char outBuffer[1 << 16];  // records are printed a line at a time: buffer them
    std::setvbuf(stdout, outBuffer, _IOFBF, sizeof outBuffer);
    const std::vector<std::string> args(argv + 1, argv + argc);
    return walb::tool::runCli("walb-tool",
                              "Offline tools for WalB logs (wlog), diffs (wdiff), log devices and images.",
                              walb::tool::toolCommands(), args);
}
