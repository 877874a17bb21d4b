// Credentials of the bulk path: the same PEM files as the gRPC servers (config `tls`), or plaintext when
// empty.
#pragma once
#include <grpcpp/grpcpp.h>

#include <string>

namespace walb::bulk {

struct TlsPem {
    std::string ca, cert, key;
    bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

std::shared_ptr<grpc::ServerCredentials> serverCredentials(const TlsPem& tls);
std::shared_ptr<grpc::ChannelCredentials> channelCredentials(const TlsPem& tls);
// Quiet, DNS without c-ares (Node carries its own c-ares), few malloc arenas; before gRPC starts.
void initGrpcOnce();

}  // namespace walb::bulk
