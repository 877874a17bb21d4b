#include "bulk/bulk_receiver.hpp"

#include <grpcpp/generic/async_generic_service.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <thread>
#include <vector>

#include "bulk/bulk_wire.hpp"
#include "core/error.hpp"
#include "core/file.hpp"

namespace walb::bulk {

struct Receiver::Entry {
    Expected expected;
    Outcome outcome;
    grpc::CallbackServerContext* ctx = nullptr;  // while a stream writes this transfer
};

// One incoming stream: the token, then bulks written at their offsets, then the count as the answer. gRPC's
// thread only takes each message and asks for the next; a writer thread of the stream's own parses and writes
// them in order, so that receiving the next bulk overlaps writing this one. At most kQueued messages wait for
// the writer: then reading pauses until it catches up (and gRPC's flow control holds the sender).
class Receiver::Reactor : public grpc::ServerGenericBidiReactor {
public:
    Reactor(Receiver& owner, grpc::GenericCallbackServerContext* ctx) : owner_(owner), ctx_(ctx) {
        writer_ = std::thread([this] { writeAll(); });
        std::lock_guard<std::mutex> lk(mu_);
        StartRead(&in_);  // gRPC runs OnReadDone on its own threads, never inside StartRead
    }
    void OnReadDone(bool ok) override {
        Message m;
        m.end = !ok;
        // The message stays in gRPC's slices: the bulk is written from them, not copied first.
        m.readable = ok && in_.Dump(&m.slices).ok();
        const bool more = ok && m.readable;
        std::lock_guard<std::mutex> lk(mu_);
        queue_.push_back(std::move(m));
        cv_.notify_one();
        if (!more || finished_) return;
        if (queue_.size() < kQueued)
            StartRead(&in_);
        else
            paused_ = true;
    }
    void OnWriteDone(bool) override {}
    // Finish was called, so the writer has stopped (OnDone never runs on the thread that called Finish).
    void OnDone() override {
        writer_.join();
        if (entry_) {
            std::lock_guard<std::mutex> lk(owner_.mu_);
            entry_->ctx = nullptr;
            if (entry_->outcome.state == Outcome::Running) {
                entry_->outcome.state = Outcome::Failed;
                entry_->outcome.error = "the bulk stream was cancelled";
            }
        }
        delete this;
    }

private:
    static constexpr size_t kQueued = 4;
    struct Message {
        bool end = false;  // the sender half-closed, or the stream broke
        bool readable = false;
        std::vector<grpc::Slice> slices;
    };

    // The writer thread: messages in arrival order until the stream finishes.
    void writeAll() {
        for (;;) {
            Message m;
            {
                std::unique_lock<std::mutex> lk(mu_);
                cv_.wait(lk, [this] { return !queue_.empty(); });
                m = std::move(queue_.front());
                queue_.pop_front();
                if (paused_) {
                    paused_ = false;
                    StartRead(&in_);
                }
            }
            try {
                // A cancelled stream writes nothing more (after forget the file may have another writer).
                if (m.end || ctx_->IsCancelled()) return complete();
                if (!m.readable) throwError(ErrorCode::InvalidArgument, "unreadable message");
                Spans message;
                message.reserve(m.slices.size());
                for (const auto& s : m.slices)
                    message.emplace_back(reinterpret_cast<const char*>(s.begin()), s.size());
                handle(parseRequest(message));
            } catch (const Error& e) {
                return fail(e.code() == ErrorCode::InvalidArgument ? grpc::StatusCode::INVALID_ARGUMENT
                            : e.code() == ErrorCode::NotFound      ? grpc::StatusCode::NOT_FOUND
                                                                   : grpc::StatusCode::INTERNAL,
                            e.what());
            }
        }
    }
    // No more reads once the stream finishes.
    void markFinished() {
        std::lock_guard<std::mutex> lk(mu_);
        finished_ = true;
    }

    void handle(const ParsedRequest& m) {
        if (m.isToken) {
            if (entry_) throwError(ErrorCode::InvalidArgument, "a second token");
            entry_ = owner_.claim(m.token, ctx_);
            file_.open(entry_->expected.path, File::Mode::ReadWrite);
            return;
        }
        if (!entry_) throwError(ErrorCode::InvalidArgument, "a bulk stream starts with its token");
        const Expected& e = entry_->expected;
        if (m.offset % 512 != 0 || m.offset > e.size || m.length > e.size - m.offset)
            throwError(ErrorCode::InvalidArgument, "bulk at " + std::to_string(m.offset) + " (+" +
                                                       std::to_string(m.length) + ") is outside the volume");
        file_.pwritevAll(m.data, m.offset);
        bytes_ += m.length;
        unsynced_ += m.length;
        end_ = std::max(end_, m.offset + m.length);
        if (e.syncEveryBytes > 0 && unsynced_ >= e.syncEveryBytes) {
            file_.fdatasync();
            unsynced_ = 0;
            std::lock_guard<std::mutex> lk(owner_.mu_);
            entry_->outcome.durable = end_;
        }
    }
    // The sender half-closed: everything it sent is written. (A sender that went away mid-stream is caught by
    // the count of bytes it reports on the control stream.)
    void complete() {
        if (!entry_) return fail(grpc::StatusCode::INVALID_ARGUMENT, "a bulk stream without a token");
        if (ctx_->IsCancelled())
            return fail(grpc::StatusCode::CANCELLED, "the sender cancelled the bulk stream");
        {
            std::lock_guard<std::mutex> lk(owner_.mu_);
            entry_->outcome.state = Outcome::Done;
            entry_->outcome.bytes = bytes_;
        }
        const std::string done = encodeDone(bytes_);
        grpc::Slice s(done);
        reply_ = grpc::ByteBuffer(&s, 1);
        markFinished();
        StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void fail(grpc::StatusCode code, const std::string& message) {
        if (entry_) {
            std::lock_guard<std::mutex> lk(owner_.mu_);
            entry_->outcome.state = Outcome::Failed;
            entry_->outcome.error = message;
        }
        markFinished();
        Finish(grpc::Status(code, message));
    }

    Receiver& owner_;
    grpc::GenericCallbackServerContext* ctx_;
    grpc::ByteBuffer in_, reply_;
    std::mutex mu_;  // guards the queue, paused_, finished_ and starting reads
    std::condition_variable cv_;
    std::deque<Message> queue_;
    bool paused_ = false;    // a message waits in in_'s place: the writer starts the next read
    bool finished_ = false;  // Finish was called
    std::thread writer_;
    std::shared_ptr<Entry> entry_;
    File file_;  // closed with the reactor
    uint64_t bytes_ = 0, unsynced_ = 0;
    uint64_t end_ = 0;  // the end of the furthest bulk written
};

class Receiver::Service : public grpc::CallbackGenericService {
public:
    Service(Receiver& owner, std::string method) : owner_(owner), method_(std::move(method)) {}
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
        if (ctx->method() != method_) {
            class Unimplemented : public grpc::ServerGenericBidiReactor {
            public:
                Unimplemented() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "")); }
                void OnDone() override { delete this; }
            };
            return new Unimplemented();
        }
        return new Reactor(owner_, ctx);
    }

private:
    Receiver& owner_;
    const std::string method_;
};

Receiver::Receiver(const ReceiverOptions& opt) {
    initGrpcOnce();
    service_ = std::make_unique<Service>(*this, opt.method);
    grpc::ServerBuilder b;
    b.AddListeningPort(opt.listen, serverCredentials(opt.tls), &port_);
    b.RegisterCallbackGenericService(service_.get());
    b.SetMaxReceiveMessageSize(64 << 20);
    // gRPC shares ports by default (SO_REUSEPORT): a second archive on the same bulk port would then take
    // half of the first one's connections instead of failing to start.
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Bigger HTTP/2 frames: fewer per bulk to parse on both ends.
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20);
    server_ = b.BuildAndStart();
    if (!server_ || port_ == 0) throwError(ErrorCode::Unavailable, "cannot listen on " + opt.listen);
}

Receiver::~Receiver() { shutdown(); }

void Receiver::shutdown() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now());  // cancels running streams at once
    server_->Wait();
    server_.reset();
}

void Receiver::expect(const std::string& token, const Expected& e) {
    std::lock_guard<std::mutex> lk(mu_);
    auto entry = std::make_shared<Entry>();
    entry->expected = e;
    entries_[token] = entry;
}

std::shared_ptr<Receiver::Entry> Receiver::claim(const std::string& token, grpc::CallbackServerContext* ctx) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = entries_.find(token);
    if (it == entries_.end()) throwError(ErrorCode::NotFound, "no transfer expects this bulk token");
    if (it->second->outcome.state != Outcome::Waiting)
        throwError(ErrorCode::InvalidArgument, "the bulk token was used already");
    it->second->outcome.state = Outcome::Running;
    it->second->ctx = ctx;
    return it->second;
}

Outcome Receiver::outcome(const std::string& token) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = entries_.find(token);
    if (it == entries_.end()) {
        Outcome o;
        o.state = Outcome::Failed;
        o.error = "unknown bulk token";
        return o;
    }
    return it->second->outcome;
}

void Receiver::forget(const std::string& token) {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = entries_.find(token);
    if (it == entries_.end()) return;
    if (it->second->ctx) it->second->ctx->TryCancel();
    entries_.erase(it);
}

}  // namespace walb::bulk
