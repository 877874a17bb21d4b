// notifyServiceManager(socket, message): one datagram of systemd's readiness protocol ("READY=1",
// "STOPPING=1") to the AF_UNIX socket that NOTIFY_SOCKET names (docs/operations.md, "Install").
//
// Node has no unix datagram sockets. Sending from this process, rather than through a `systemd-notify`
// child, keeps the sender the service's main PID: systemd accepts it under NotifyAccess=main, and it cannot
// lose the message the way it loses one from a helper that has already exited when systemd looks up the
// sender's unit. The call is one short sendto at start and stop, so it runs on the JS thread.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "addon/job.hpp"

namespace walb::addon {

Napi::Value NotifyServiceManager(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string socketName = argString(info, 0, "socket");
    const std::string message = argString(info, 1, "message");

    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    // A leading '@' names a socket in the abstract namespace: its address starts with a NUL byte.
    const bool abstract = !socketName.empty() && socketName[0] == '@';
    if (socketName.empty() || (socketName[0] != '/' && !abstract))
        throwInvalid(env,
                     "NOTIFY_SOCKET must be an absolute path or start with '@', got '" + socketName + "'");
    if (socketName.size() >= sizeof(addr.sun_path))
        throwInvalid(env, "NOTIFY_SOCKET is too long: " + socketName);
    std::memcpy(addr.sun_path, socketName.data(), socketName.size());
    if (abstract) addr.sun_path[0] = '\0';
    const socklen_t addrLen =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socketName.size() + (abstract ? 0 : 1));

    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw makeError(env, "IO_ERROR", std::string("socket(AF_UNIX): ") + std::strerror(errno));
    const ssize_t sent = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                                  reinterpret_cast<const sockaddr*>(&addr), addrLen);
    const int sendErrno = errno;
    ::close(fd);
    if (sent < 0)
        throw makeError(env, "IO_ERROR", "cannot notify " + socketName + ": " + std::strerror(sendErrno));
    return env.Undefined();
}

}  // namespace walb::addon
