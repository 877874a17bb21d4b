#include "bulk/bulk_sender.hpp"

#include <grpcpp/generic/generic_stub.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "bulk/bulk_wire.hpp"
#include "core/diff.hpp"
#include "core/error.hpp"
#include "core/file.hpp"

namespace walb::bulk {

void SendControl::cancel() {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled_ = true;
    if (ctx_) ctx_->TryCancel();
}

bool SendControl::cancelled() {
    std::lock_guard<std::mutex> lk(mu_);
    return cancelled_;
}

void SendControl::attach(grpc::ClientContext* ctx) {
    std::lock_guard<std::mutex> lk(mu_);
    ctx_ = ctx;
    if (cancelled_) ctx->TryCancel();
}

void SendControl::detach() {
    std::lock_guard<std::mutex> lk(mu_);
    ctx_ = nullptr;
}

namespace {

using Clock = std::chrono::steady_clock;

ErrorCode codeOf(grpc::StatusCode c) {
    switch (c) {
        case grpc::StatusCode::CANCELLED:
            return ErrorCode::Cancelled;
        case grpc::StatusCode::INVALID_ARGUMENT:
        case grpc::StatusCode::OUT_OF_RANGE:
            return ErrorCode::InvalidArgument;
        case grpc::StatusCode::NOT_FOUND:
            return ErrorCode::NotFound;
        default:
            return ErrorCode::Unavailable;
    }
}

// One gRPC client stream driven through a completion queue, one operation at a time. The destructor cancels
// and drains whatever is still pending, as gRPC requires before the call goes away.
class Stream {
public:
    Stream(const SendOptions& opt, SendControl& control) : opt_(opt), control_(control) {
        grpc::ChannelArguments args;
        args.SetMaxSendMessageSize(64 << 20);
        args.SetMaxReceiveMessageSize(1 << 20);
        channel_ = grpc::CreateCustomChannel(opt.target, channelCredentials(opt.tls), args);
        stub_ = std::make_unique<grpc::GenericStub>(channel_);
        control_.attach(&ctx_);
        call_ = stub_->PrepareCall(&ctx_, opt.method, &cq_);
        call_->StartCall(tag());
        await(opt.timeoutSec, "connecting");
    }
    ~Stream() {
        if (!finished_) {
            ctx_.TryCancel();
            while (pending_ > 0) drainOne();
            grpc::Status st;
            call_->Finish(&st, tag());
            while (pending_ > 0) drainOne();
        }
        control_.detach();
        cq_.Shutdown();
        void* t;
        bool ok;
        while (cq_.Next(&t, &ok)) {
        }
    }
    // Waits for the previous write; returns at once when nothing is in flight.
    void settle() {
        if (pending_ > 0) await(opt_.timeoutSec, "waiting for the receiver");
    }
    // gRPC takes its own reference to the slices; the caller's buffers are free again at return.
    void write(grpc::Slice head, grpc::Slice body = grpc::Slice()) {
        settle();
        const size_t n = body.size() > 0 ? 2 : 1;
        grpc::Slice parts[2] = {std::move(head), std::move(body)};
        grpc::ByteBuffer bb(parts, n);
        call_->Write(bb, tag());
    }
    // Half-closes and returns the receiver's count of bytes written.
    uint64_t finish() {
        settle();
        call_->WritesDone(tag());
        await(opt_.timeoutSec, "closing the stream");
        grpc::ByteBuffer reply;
        call_->Read(&reply, tag());
        const uint32_t answerSec = opt_.timeoutSec * 6;  // the receiver may be syncing
        const bool gotReply = awaitOk(answerSec);
        grpc::Status st;
        call_->Finish(&st, tag());
        awaitOk(opt_.timeoutSec);
        finished_ = true;
        if (!st.ok() || timedOut_) fail(st, answerSec, "its final answer");
        std::vector<grpc::Slice> slices;
        if (!gotReply || !reply.Dump(&slices).ok())
            throwError(ErrorCode::Unavailable, "the bulk receiver closed without an answer");
        std::string bytes;
        for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        return parseDone(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }

private:
    void* tag() {
        pending_++;
        return this;
    }
    void drainOne() {
        void* t;
        bool ok;
        cq_.Next(&t, &ok);
        pending_--;
    }
    // Waits for the one pending operation; false when it failed (the stream is broken).
    bool awaitOk(uint32_t timeoutSec) {
        void* t;
        bool ok;
        // gRPC takes system_clock deadlines only.
        const auto deadline =
            std::chrono::system_clock::now() + std::chrono::seconds(timeoutSec ? timeoutSec : 86400);
        switch (cq_.AsyncNext(&t, &ok, deadline)) {
            case grpc::CompletionQueue::GOT_EVENT:
                pending_--;
                return ok;
            case grpc::CompletionQueue::TIMEOUT:
                timedOut_ = true;
                ctx_.TryCancel();
                drainOne();
                return false;
            default:
                throwError(ErrorCode::Unavailable, "bulk stream shut down");
        }
    }
    // As awaitOk, but a failed operation ends the stream: its status becomes the error.
    void await(uint32_t timeoutSec, const char* what) {
        if (awaitOk(timeoutSec)) return;
        grpc::Status st;
        call_->Finish(&st, tag());
        awaitOk(opt_.timeoutSec);
        finished_ = true;
        fail(st, timeoutSec, what);
    }
    // The error of an ended stream. A wait that timed out cancelled the call itself: that is the receiver's
    // silence (UNAVAILABLE), not a cancel.
    [[noreturn]] void fail(const grpc::Status& st, uint32_t timeoutSec, const char* what) {
        if (timedOut_)
            throwError(ErrorCode::Unavailable, std::string("the bulk receiver at ") + opt_.target +
                                                   " did not answer within " + std::to_string(timeoutSec) +
                                                   " s (" + what + ")");
        if (control_.cancelled()) throwError(ErrorCode::Cancelled, "cancelled");
        throwError(codeOf(st.error_code()),
                   "bulk transfer to " + opt_.target +
                       " failed: " + (st.ok() ? std::string("stream broken") : st.error_message()));
    }

    const SendOptions& opt_;
    SendControl& control_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<grpc::GenericStub> stub_;
    grpc::ClientContext ctx_;
    grpc::CompletionQueue cq_;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
    int pending_ = 0;
    bool finished_ = false;
    bool timedOut_ = false;
};

}  // namespace

SendResult sendFile(const SendOptions& opt, SendControl& control, const Progress& progress) {
    initGrpcOnce();
    if (opt.bulk == 0 || opt.bulk > (32u << 20))
        throwError(ErrorCode::InvalidArgument, "bulk size out of range");
    if (opt.from % 512 != 0 || opt.from > opt.size)
        throwError(ErrorCode::InvalidArgument, "start offset " + std::to_string(opt.from) + " out of range");
    const File file(opt.path, File::Mode::Read);

    SendResult r;
    Stream stream(opt, control);
    stream.write(grpc::Slice(encodeToken(opt.token)));
    // Each bulk is read straight into a slice that gRPC then owns: no copy between the read and the socket. A
    // zero bulk leaves its slice for the next read.
    grpc::Slice buf;
    const auto started = Clock::now();
    r.scanned = opt.from;
    for (uint64_t off = opt.from; off < opt.size;) {
        if (control.cancelled()) throwError(ErrorCode::Cancelled, "cancelled");
        if (opt.bytesPerSec > 0) {
            const auto due =
                started + std::chrono::duration<double>(double(off - opt.from) / opt.bytesPerSec);
            // Let the previous write finish first so that a long pause cannot look like a hung receiver.
            if (due > Clock::now()) stream.settle();
            std::this_thread::sleep_until(due);
        }
        const size_t len = size_t(std::min<uint64_t>(opt.bulk, opt.size - off));
        if (buf.size() != len) buf = grpc::Slice(len);
        // The slice is this thread's alone until written (a fresh allocation, one reference).
        char* data = reinterpret_cast<char*>(const_cast<uint8_t*>(buf.begin()));
        // The read overlaps the previous write, which gRPC holds in its own slice.
        file.preadAll(data, len, off);
        if (!isAllZero(data, len)) {
            uint8_t head[kDataHeadMax];
            const size_t h = encodeDataHead(head, off, len);
            stream.write(grpc::Slice(head, h), std::move(buf));
            r.sent += len;
            control.sent = r.sent;
        }
        off += len;
        r.scanned = off;
        if (progress) progress(r.scanned, opt.size);
    }
    const uint64_t written = stream.finish();
    if (written != r.sent)
        throwError(ErrorCode::Unavailable, "the bulk receiver wrote " + std::to_string(written) +
                                               " bytes of " + std::to_string(r.sent));
    return r;
}

}  // namespace walb::bulk
