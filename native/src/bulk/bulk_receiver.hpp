// The receiving end of the native bulk path: a gRPC server (its own port, gRPC's own threads) that writes the
// bulks of expected transfers into their files. The JS side accepts a transfer on its control stream, tells
// the receiver which token goes to which file, and asks for the result when the control stream ends.
#pragma once
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "bulk/bulk_tls.hpp"

namespace walb::bulk {

struct ReceiverOptions {
    std::string listen;  // HOST:PORT, port 0 = chosen by the system
    std::string method;  // the one method served
    TlsPem tls;
};

struct Expected {
    std::string path;             // an existing file, written in place
    uint64_t size = 0;            // bulks must lie inside [0, size)
    uint64_t syncEveryBytes = 0;  // fdatasync after this many bytes, 0 = never (the caller syncs at the end)
};

struct Outcome {
    enum State { Waiting, Running, Done, Failed } state = Waiting;
    uint64_t bytes = 0;
    // Every byte below it is written and synced (bulks come in address order): where a rerun may resume.
    uint64_t durable = 0;
    std::string error;
};

class Receiver {
public:
    explicit Receiver(
        const ReceiverOptions& opt);  // listening on return; throws Unavailable when it cannot bind
    ~Receiver();
    int port() const { return port_; }
    void expect(const std::string& token, const Expected& e);
    Outcome outcome(const std::string& token);
    // Drops the token; a transfer still running on it is cancelled.
    void forget(const std::string& token);
    void shutdown();

    struct Entry;
    class Reactor;

private:
    class Service;
    std::shared_ptr<Entry> claim(const std::string& token, grpc::CallbackServerContext* ctx);

    std::mutex mu_;
    std::map<std::string, std::shared_ptr<Entry>> entries_;
    std::unique_ptr<Service> service_;
    std::unique_ptr<grpc::Server> server_;
    int port_ = 0;
};

}  // namespace walb::bulk
