// NBD transmission from JS: the exports' serve() (the wdev's, the file export's) and the file and snapshot
// export classes.
#pragma once
#include <napi.h>

#include <memory>

#include "core/nbd_backend.hpp"
#include "core/nbd_latency.hpp"
#include "core/nbd_wire.hpp"

namespace walb::addon {

// serve(fd, pending, limits, onClose(stats)) of an export over `backend`: starts the transmission phase of
// one connection on C++ threads and returns its handle { stats(), shutdown(reason), abort(reason) }. The
// descriptor is duplicated; the caller closes its own socket afterwards. `wire` receives the connection for
// its owner; with `latency`, the connection times its requests into it.
Napi::Object serveNbd(const Napi::CallbackInfo& info, std::shared_ptr<NbdBackend> backend,
                      std::shared_ptr<NbdWire>* wire, std::shared_ptr<NbdLatency> latency = nullptr);

Napi::Function initNbdFileClass(Napi::Env env);
Napi::Function initNbdSnapshotClass(Napi::Env env);

}  // namespace walb::addon
