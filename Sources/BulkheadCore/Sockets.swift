#if canImport(Glibc)
import Glibc
#endif
import CBulkheadPosix

/// Small wrappers over the socket calls the supervisor and workers share.
public enum Sockets {
    /// Binds a TCP listening socket on `host:port` (port 0 picks one) and returns
    /// it with the real port. No SO_REUSEPORT: a second bind on a busy port must
    /// fail, not silently share the traffic.
    public static func listenTCP(host: String, port: Int, backlog: Int32 = 1024) throws(SystemError) -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close(fd)
            throw SystemError("parse address \(host)", code: EINVAL)
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            let error = SystemError("bind \(host):\(port)")
            close(fd)
            throw error
        }
        guard listen(fd, backlog) == 0 else {
            let error = SystemError("listen \(host):\(port)")
            close(fd)
            throw error
        }
        return (fd, try localPort(of: fd))
    }

    /// The local port a TCP socket is bound to.
    public static func localPort(of fd: Int32) throws(SystemError) -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { throw SystemError("getsockname") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The IP address of a connected TCP socket's peer as text (`127.0.0.1`, `::1`),
    /// or "" when it has none (a Unix socket, a closed connection).
    public static func peerAddress(of fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0 else { return "" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = Int32(storage.ss_family)
        let written: UnsafePointer<CChar>? = withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET:
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    var bytes = address.pointee.sin_addr
                    return inet_ntop(AF_INET, &bytes, &text, socklen_t(text.count))
                }
            case AF_INET6:
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var bytes = address.pointee.sin6_addr
                    return inet_ntop(AF_INET6, &bytes, &text, socklen_t(text.count))
                }
            default:
                nil
            }
        }
        guard written != nil else { return "" }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Creates a listening Unix stream socket at `path` (0600), replacing a stale file.
    public static func listenUnix(path: String, backlog: Int32 = 16) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        unlink(path)
        do {
            try withUnixAddress(path) { address, length throws(SystemError) in
                guard bind(fd, address, length) == 0 else { throw SystemError("bind \(path)") }
            }
        } catch {
            close(fd)
            throw error
        }
        chmod(path, 0o600)
        guard listen(fd, backlog) == 0 else {
            let error = SystemError("listen \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    /// Connects to the Unix socket at `path`.
    public static func connectUnix(path: String, timeout: Double? = nil) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        // On a Unix socket the send timeout also bounds a connect that waits for room
        // in a full backlog (a server that stopped accepting).
        if let timeout { setTimeouts(fd, seconds: timeout) }
        do {
            try withUnixAddress(path) { address, length throws(SystemError) in
                var result: Int32
                repeat { result = connect(fd, address, length) } while result != 0 && errno == EINTR
                guard result == 0 else { throw SystemError("connect \(path)") }
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Sets send and receive timeouts on a socket.
    public static func setTimeouts(_ fd: Int32, seconds: Double) {
        var time = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sets only the receive timeout (on a listening socket it bounds `accept`).
    public static func setReceiveTimeout(_ fd: Int32, seconds: Double) {
        var time = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends a descriptor over a Unix socket.
    public static func sendDescriptor(_ descriptor: Int32, over fd: Int32) throws(SystemError) {
        guard bh_send_fd(fd, descriptor) == 0 else { throw SystemError("send descriptor") }
    }

    /// Receives a descriptor sent with `sendDescriptor`.
    public static func receiveDescriptor(over fd: Int32) throws(SystemError) -> Int32 {
        let received = bh_recv_fd(fd)
        guard received >= 0 else { throw SystemError("receive descriptor") }
        return received
    }

    /// The effective uid of the process at the other end of a connected Unix socket.
    public static func peerUID(of fd: Int32) throws(SystemError) -> uid_t {
        var uid: uid_t = 0
        guard bh_peer_uid(fd, &uid) == 0 else { throw SystemError("read the peer's credentials") }
        return uid
    }

    private static func withUnixAddress(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemError) -> Void
    ) throws(SystemError) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw SystemError("socket path \(path) is \(bytes.count) bytes; Unix sockets allow \(capacity - 1)", code: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        let result: Result<Void, SystemError> = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                do throws(SystemError) {
                    try body(pointer, length)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
        }
        try result.get()
    }
}
