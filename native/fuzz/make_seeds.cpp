// Writes small valid inputs for the fuzzers into DIR/<fuzzer>/ (docs/testing.md): ldev super sectors,
// logpacks, wlogs and wdiffs of every compression we write, made by the core's own writers from a fixed
// workload.
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/ldev.hpp"
#include "core/nbd_request.hpp"
#include "core/ops.hpp"

using namespace walb;
namespace fs = std::filesystem;

namespace {

void save(const fs::path& dir, const std::string& name, const std::string& bytes) {
    fs::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// The first byte of the super and logpack inputs chooses the block size: 512 * (1 + byte % 8).
char pbsByte(uint32_t pbs) { return static_cast<char>(pbs / kLbSize - 1); }

void superSeeds(const fs::path& out, const fs::path& work, uint32_t pbs) {
    const fs::path ldev = work / "seed.ldev";
    std::ofstream(ldev, std::ios::trunc).close();
    fs::resize_file(ldev, 64 * pbs);
    Ldev::FormatOptions opt;
    opt.pbs = pbs;
    opt.deviceSizeLb = 1024;
    opt.name = "seed";
    Ldev::format(ldev.string(), opt);
    std::string block(pbs, '\0');
    Ldev(ldev.string(), false).file().preadAll(block.data(), pbs, superSectorOffset());
    save(out / "ldev_super_fuzz", "super-" + std::to_string(pbs), pbsByte(pbs) + block);
}

fs::path wlogSeed(const fs::path& out, const fs::path& work, uint32_t pbs) {
    GenOptions g;
    g.pbs = pbs;
    g.deviceSizeLb = 512;
    g.amountBytes = pbs == kLbSize ? 8 << 10 : 12 << 10;
    g.maxIoLb = 16;
    g.discardRatio = 0.15;
    g.allZeroRatio = 0.15;
    g.overlapRatio = 0.3;
    g.data = "compressible";
    g.ringBufferPb = 40;
    g.maxIosPerPack = 4;
    g.seed = 7;
    g.salt = 0x5eed;
    g.hasSalt = true;
    const fs::path wlog = work / ("seed-" + std::to_string(pbs) + ".wlog");
    generateWlog(wlog.string(), g);
    save(out / "wlog_reader_fuzz", wlog.filename().string(), slurp(wlog));

    WlogReader reader(wlog.string());
    Logpack pack;
    for (int i = 0; i < 4 && reader.next(pack); i++) {
        std::string in(1, pbsByte(pbs));
        in.append(reinterpret_cast<const char*>(&g.salt), 4);
        in.append(pack.headerBlock().data(), pack.headerBlock().size());
        in.append(pack.data().data(), pack.data().size());
        save(out / "logpack_header_fuzz", "pack-" + std::to_string(pbs) + "-" + std::to_string(i), in);
    }
    return wlog;
}

void wdiffSeeds(const fs::path& out, const fs::path& work, const fs::path& wlog) {
    for (bool indexed : {false, true}) {
        for (const char* codec : {"none", "snappy", "zstd", "lz4", "gzip", "lzma"}) {
            ConvertOptions opt;
            opt.indexed = indexed;
            opt.write.compression = compressionFromName(codec);
            opt.write.maxIoBlocks = 8;
            const fs::path wdiff = work / "seed.wdiff";
            wlogToWdiff({wlog.string()}, wdiff.string(), opt);
            const std::string name = wlog.stem().string() + "-" + codec;
            save(out / (indexed ? "wdiff_indexed_fuzz" : "wdiff_sorted_fuzz"), name, slurp(wdiff));
        }
    }
}

// NBD requests as nbd_request_fuzz reads them: limits (block size 512, 32 MiB payload, a 1 GiB export,
// writable), then a request header of each command.
void nbdSeeds(const fs::path& out) {
    auto bigEndian = [](std::string& s, uint64_t v, int n) {
        for (int i = n - 1; i >= 0; i--) s.push_back(static_cast<char>(v >> (8 * i)));
    };
    for (uint16_t type : {nbd::kCmdRead, nbd::kCmdWrite, nbd::kCmdDisc, nbd::kCmdFlush, nbd::kCmdTrim,
                          nbd::kCmdWriteZeroes}) {
        std::string in;
        in.push_back(9);                     // 1 << 9 = 512
        bigEndian(in, (32u << 20) >> 8, 3);  // max payload
        bigEndian(in, 1ull << 30, 8);        // export size
        in.push_back(0);                     // writable
        bigEndian(in, nbd::kRequestMagic, 4);
        bigEndian(in, type == nbd::kCmdWrite ? nbd::kCmdFlagFua : 0, 2);
        bigEndian(in, type, 2);
        bigEndian(in, 0x1234 + type, 8);                                               // cookie
        bigEndian(in, type == nbd::kCmdFlush ? 0 : 4096 * type, 8);                    // offset
        bigEndian(in, type == nbd::kCmdFlush || type == nbd::kCmdDisc ? 0 : 4096, 4);  // length
        save(out / "nbd_request_fuzz", "cmd" + std::to_string(type), in);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_seeds DIR\n";
        return 2;
    }
    const fs::path out = argv[1], work = out / ".work";
    fs::create_directories(work);
    for (uint32_t pbs : {kLbSize, kLayoutPageSize}) {
        superSeeds(out, work, pbs);
        wdiffSeeds(out, work, wlogSeed(out, work, pbs));
    }
    nbdSeeds(out);
    fs::remove_all(work);
    return 0;
}
