#include "core/file.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/bytes.hpp"
#include "core/error.hpp"

namespace walb {

namespace {

[[noreturn]] void throwErrno(const std::string& what, const std::string& path, int err) {
    ErrorCode code = err == ENOENT ? ErrorCode::NotFound : ErrorCode::IoError;
    throwError(code, what + " " + path + ": " + std::strerror(err));
}

}  // namespace

void AlignedBuffer::Free::operator()(char* p) const { std::free(p); }

void AlignedBuffer::resize(size_t size) {
    if (size > capacity_) {
        size_t cap = (size + kAlign - 1) / kAlign * kAlign;
        void* p = nullptr;
        if (posix_memalign(&p, kAlign, cap) != 0) throw std::bad_alloc();
        ptr_.reset(static_cast<char*>(p));
        capacity_ = cap;
    }
    size_ = size;
}

File::~File() { close(); }

File::File(File&& other) noexcept { *this = std::move(other); }

File& File::operator=(File&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = other.fd_;
        owned_ = other.owned_;
        direct_ = other.direct_;
        blockDevice_ = other.blockDevice_;
        path_ = std::move(other.path_);
        other.fd_ = -1;
    }
    return *this;
}

void File::open(const std::string& path, Mode mode, bool direct) {
    close();
    int flags = O_CLOEXEC;
    switch (mode) {
        case Mode::Read:
            flags |= O_RDONLY;
            break;
        case Mode::ReadWrite:
            flags |= O_RDWR;
            break;
        case Mode::Create:
            flags |= O_RDWR | O_CREAT;
            break;
        case Mode::CreateTruncate:
            flags |= O_RDWR | O_CREAT | O_TRUNC;
            break;
    }
    int fd = -1;
    if (direct) {
        fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
        direct_ = fd >= 0;
    }
    if (fd < 0) fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) throwErrno("cannot open", path, errno);
    fd_ = fd;
    owned_ = true;
    path_ = path;
    struct stat st;
    if (::fstat(fd_, &st) == 0) blockDevice_ = S_ISBLK(st.st_mode);
}

void File::adopt(int fd, const std::string& name) {
    close();
    fd_ = fd;
    owned_ = false;
    path_ = name;
}

void File::close() {
    if (fd_ >= 0 && owned_) ::close(fd_);
    fd_ = -1;
    direct_ = false;
    blockDevice_ = false;
}

uint64_t File::size() const {
    if (blockDevice_) {
        uint64_t bytes = 0;
        if (::ioctl(fd_, BLKGETSIZE64, &bytes) < 0) throwErrno("BLKGETSIZE64 failed on", path_, errno);
        return bytes;
    }
    struct stat st;
    if (::fstat(fd_, &st) < 0) throwErrno("cannot stat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
}

uint32_t File::physicalBlockSize() const {
    if (!blockDevice_) return 512;
    unsigned int pbs = 0;
    if (::ioctl(fd_, BLKPBSZGET, &pbs) < 0) throwErrno("BLKPBSZGET failed on", path_, errno);
    return pbs;
}

size_t File::preadSome(void* buf, size_t len, uint64_t off) const {
    size_t done = 0;
    auto* p = static_cast<char*>(buf);
    while (done < len) {
        ssize_t r = ::pread(fd_, p + done, len - done, static_cast<off_t>(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            throwError(ErrorCode::IoError,
                       "read failed: " + where(path_, off + done) + ": " + std::strerror(errno));
        }
        if (r == 0) break;
        done += static_cast<size_t>(r);
    }
    return done;
}

void File::preadAll(void* buf, size_t len, uint64_t off) const {
    size_t got = preadSome(buf, len, off);
    if (got < len) {
        throwError(ErrorCode::Truncated, "unexpected end of file: " + where(path_, off + got) + " (needed " +
                                             std::to_string(len) + " bytes from " + std::to_string(off) +
                                             ")");
    }
}

void File::pwriteAll(const void* buf, size_t len, uint64_t off) {
    size_t done = 0;
    const auto* p = static_cast<const char*>(buf);
    while (done < len) {
        ssize_t r = ::pwrite(fd_, p + done, len - done, static_cast<off_t>(off + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            throwError(ErrorCode::IoError,
                       "write failed: " + where(path_, off + done) + ": " + std::strerror(errno));
        }
        done += static_cast<size_t>(r);
    }
}

void File::pwritevAll(const std::vector<std::pair<const char*, size_t>>& spans, uint64_t off) {
    std::vector<struct iovec> iov;
    iov.reserve(spans.size());
    for (const auto& [p, n] : spans)
        if (n > 0) iov.push_back({const_cast<char*>(p), n});
    size_t i = 0;
    while (i < iov.size()) {
        const int cnt = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
        ssize_t r = ::pwritev(fd_, iov.data() + i, cnt, static_cast<off_t>(off));
        if (r < 0) {
            if (errno == EINTR) continue;
            throwError(ErrorCode::IoError,
                       "write failed: " + where(path_, off) + ": " + std::strerror(errno));
        }
        off += static_cast<uint64_t>(r);
        size_t k = static_cast<size_t>(r);
        while (i < iov.size() && k >= iov[i].iov_len) k -= iov[i++].iov_len;
        if (i < iov.size()) {
            iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + k;
            iov[i].iov_len -= k;
        }
    }
}

void File::writeAll(const void* buf, size_t len) {
    size_t done = 0;
    const auto* p = static_cast<const char*>(buf);
    while (done < len) {
        ssize_t r = ::write(fd_, p + done, len - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throwError(ErrorCode::IoError, "write failed on " + path_ + ": " + std::strerror(errno));
        }
        done += static_cast<size_t>(r);
    }
}

void File::truncate(uint64_t size) {
    if (::ftruncate(fd_, static_cast<off_t>(size)) < 0) throwErrno("cannot truncate", path_, errno);
}

void File::fdatasync() {
    if (::fdatasync(fd_) < 0) throwErrno("fdatasync failed on", path_, errno);
}

void File::fsync() {
    if (::fsync(fd_) < 0) throwErrno("fsync failed on", path_, errno);
}

bool File::discard(uint64_t off, uint64_t len) {
    if (len == 0) return true;
    if (blockDevice_) {
        uint64_t range[2] = {off, len};
        return ::ioctl(fd_, BLKDISCARD, range) == 0;
    }
    return ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                       static_cast<off_t>(len)) == 0;
}

void File::writeZeroes(uint64_t off, uint64_t len) {
    if (len == 0) return;
    if (blockDevice_) {
        uint64_t range[2] = {off, len};
        if (::ioctl(fd_, BLKZEROOUT, range) == 0) return;
    } else if (::fallocate(fd_, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(off), static_cast<off_t>(len)) ==
               0) {
        return;
    }
    static const Bytes zeros(1 << 20, 0);
    while (len > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeros.size()));
        pwriteAll(zeros.data(), n, off);
        off += n;
        len -= n;
    }
}

FileMapping::~FileMapping() { unmap(); }

void FileMapping::unmap() {
    if (base_) ::munmap(base_, mapped_);
    base_ = nullptr;
    data_ = nullptr;
}

bool FileMapping::map(const File& f, uint64_t off, size_t len) {
    unmap();
    if (len == 0) return false;
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t start = off / page * page;
    mapped_ = static_cast<size_t>(off - start) + len;
    void* p = ::mmap(nullptr, mapped_, PROT_READ, MAP_SHARED, f.fd(), static_cast<off_t>(start));
    if (p == MAP_FAILED) return false;
    // Read once from front to back: the kernel may read ahead and drop pages behind.
    ::madvise(p, mapped_, MADV_SEQUENTIAL);
    base_ = p;
    data_ = static_cast<const char*>(p) + (off - start);
    return true;
}

void fsyncDirectoryOf(const std::string& path) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throwErrno("cannot open directory", dir, errno);
    int r = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (r < 0) throwErrno("fsync failed on directory", dir, err);
}

void renameDurably(const std::string& from, const std::string& to) {
    if (::rename(from.c_str(), to.c_str()) < 0) throwErrno("cannot rename " + from + " to", to, errno);
    fsyncDirectoryOf(to);
}

AtomicOutputFile::AtomicOutputFile(const std::string& path) : path_(path) {
    auto slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    tmpPath_ = dir + "." + base + ".tmp-" + std::to_string(::getpid());
    file_.open(tmpPath_, File::Mode::CreateTruncate);
}

AtomicOutputFile::~AtomicOutputFile() {
    if (!committed_) {
        file_.close();
        ::unlink(tmpPath_.c_str());
    }
}

void AtomicOutputFile::commit() {
    file_.fdatasync();
    file_.close();
    renameDurably(tmpPath_, path_);
    committed_ = true;
}

}  // namespace walb
