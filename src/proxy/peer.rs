//! Who is on the other end of a loopback connection. The proxy serves only its own user and
//! root (the nix-daemon), so a URL secret that leaked into a log (Nix prints cache URLs) is of
//! no use to other local users.
//!
//! The owner of the client socket comes from one exact kernel query (netlink `sock_diag` for
//! the 4-tuple), so an accept costs the same however many sockets the machine has. Only an
//! ESTABLISHED socket counts: a closed one lingers in TIME_WAIT with uid 0 and must not read
//! as root. Where the query is unavailable, `/proc/net/tcp` and `/proc/net/tcp6` are scanned
//! instead (a client that connects to `[::ffff:127.0.0.1]` is listed in `tcp6`). Anything not
//! found is refused: the check fails closed.

use std::net::{IpAddr, SocketAddr};

/// What an owner lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The uid of the established client socket.
    Uid(u32),
    /// No established socket with that 4-tuple (closed already, or never ours to see).
    NotFound,
}

/// Whether this platform can tell who owns a loopback connection. Where it cannot (macOS), the
/// proxy relies on the URL secret alone, and `proxy status` and `doctor` say so.
pub const SUPPORTED: bool = cfg!(target_os = "linux");

/// Who may use the proxy: its own user and root (the nix-daemon). `me` is the proxy's uid.
pub fn may_connect(owner: Owner, me: u32) -> bool {
    matches!(owner, Owner::Uid(u) if u == me || u == 0)
}

/// May this peer write (PUT)? Only the proxy's own user: the daemon only reads.
pub fn may_write(peer_uid: u32, me: u32) -> bool {
    peer_uid == me
}

/// The owner of the socket that `client` connected to `server` with. Not found, or a lookup that
/// failed, is `NotFound`: callers refuse it.
pub fn owner(client: SocketAddr, server: SocketAddr) -> Owner {
    #[cfg(target_os = "linux")]
    {
        match diag::lookup(client, server) {
            Ok(o) => o,
            // No sock_diag here (an old kernel, a sandbox): scan the tables instead.
            Err(_) => proc_lookup(client, server),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (client, server);
        Owner::NotFound
    }
}

#[cfg(target_os = "linux")]
fn proc_lookup(client: SocketAddr, server: SocketAddr) -> Owner {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table)
            && let Some(uid) = uid_from_proc(&text, client, server)
        {
            return Owner::Uid(uid);
        }
    }
    Owner::NotFound
}

/// The 16 address bytes as IPv6 (IPv4 as v4-mapped), so that one comparison covers both tables.
fn as_v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Parses `ADDR:PORT` as `/proc/net/tcp{,6}` prints it: the address is the kernel's
/// network-order bytes printed as native-endian 32-bit words (`%08X` each), the port a plain
/// hex number. `0100007F:1F90` is 127.0.0.1:8080 on little-endian machines.
fn parse_proc_addr(field: &str) -> Option<([u8; 16], u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if addr.len() % 8 != 0 {
        return None;
    }
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some((as_v6(ip), port))
}

/// The uid owning the ESTABLISHED socket whose local end is `client` and remote end `server`,
/// from the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn uid_from_proc(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let want_local = (as_v6(client.ip()), client.port());
    let want_remote = (as_v6(server.ip()), server.port());
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...; st 01 = ESTABLISHED.
        if f.len() <= 7 || f[3] != "01" {
            return None;
        }
        (parse_proc_addr(f[1])? == want_local && parse_proc_addr(f[2])? == want_remote)
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

/// The netlink `sock_diag` query for one TCP socket (linux/inet_diag.h).
#[cfg(target_os = "linux")]
mod diag {
    use super::Owner;
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLMSG_ERROR: u16 = 2;
    const TCP_ESTABLISHED: u8 = 1;
    const NLMSG_HDRLEN: usize = 16;
    /// inet_diag_req_v2: family, protocol, ext, pad, states (u32), then inet_diag_sockid.
    const REQ_LEN: usize = 8 + SOCKID_LEN;
    /// inet_diag_sockid: sport, dport (be16), src[4], dst[4] (be32), if (u32), cookie[2] (u32).
    const SOCKID_LEN: usize = 4 + 16 + 16 + 4 + 8;
    /// In inet_diag_msg: family, state, timer, retrans, sockid, expires, rqueue, wqueue, uid.
    const MSG_STATE: usize = 1;
    const MSG_SOCKID: usize = 4;
    const MSG_UID: usize = 4 + SOCKID_LEN + 12;

    /// The inet_diag_sockid for the socket whose local end is `local` and remote end `remote`.
    /// Ports and addresses are network order; the interface and cookie are native order.
    pub(super) fn sockid(local: SocketAddr, remote: SocketAddr) -> [u8; SOCKID_LEN] {
        let mut id = [0u8; SOCKID_LEN];
        id[0..2].copy_from_slice(&local.port().to_be_bytes());
        id[2..4].copy_from_slice(&remote.port().to_be_bytes());
        let put = |dst: &mut [u8], ip: IpAddr| match ip {
            IpAddr::V4(v4) => dst[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => dst.copy_from_slice(&v6.octets()),
        };
        put(&mut id[4..20], local.ip());
        put(&mut id[20..36], remote.ip());
        // idiag_if = 0 (any); cookie = INET_DIAG_NOCOOKIE (all ones): no cookie check.
        id[40..48].copy_from_slice(&[0xff; 8]);
        id
    }

    /// The whole request message: nlmsghdr, then inet_diag_req_v2 for one TCP socket.
    pub(super) fn request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
        let family = if local.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        let mut m = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
        m.extend_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        // NLM_F_REQUEST without NLM_F_DUMP: the kernel looks up exactly this socket.
        m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
        // idiag_states: ignored by the exact lookup; the reply's state is checked below.
        m.extend_from_slice(&u32::MAX.to_ne_bytes());
        m.extend_from_slice(&sockid(local, remote));
        m
    }

    /// Reads the kernel's answer: the socket's owner if it is the one asked for and
    /// ESTABLISHED; `NotFound` for ENOENT or another state; `Err` when the query itself failed.
    pub(super) fn parse_reply(buf: &[u8], want: &[u8; SOCKID_LEN], seq: u32) -> io::Result<Owner> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag reply");
        // Invariant (both `try_into`s below): a slice of exactly 4 (2) bytes fits the array.
        let u32_at = |b: &[u8], at: usize| -> io::Result<u32> {
            Ok(u32::from_ne_bytes(
                b.get(at..at + 4).ok_or_else(bad)?.try_into().unwrap(),
            ))
        };
        let len = u32_at(buf, 0)? as usize;
        let kind = u16::from_ne_bytes(buf.get(4..6).ok_or_else(bad)?.try_into().unwrap());
        if u32_at(buf, 8)? != seq || len > buf.len() || len < NLMSG_HDRLEN {
            return Err(bad());
        }
        let body = &buf[NLMSG_HDRLEN..len];
        if kind == NLMSG_ERROR {
            let errno = -(u32_at(body, 0)? as i32);
            return if errno == libc::ENOENT {
                Ok(Owner::NotFound)
            } else {
                Err(io::Error::from_raw_os_error(errno))
            };
        }
        if kind != SOCK_DIAG_BY_FAMILY {
            return Err(bad());
        }
        let state = *body.get(MSG_STATE).ok_or_else(bad)?;
        // The lookup matches addresses and ports only; compare those (not the cookie).
        let id = body.get(MSG_SOCKID..MSG_SOCKID + 36).ok_or_else(bad)?;
        if state != TCP_ESTABLISHED || id != &want[..36] && !mapped_match(id, want) {
            return Ok(Owner::NotFound);
        }
        Ok(Owner::Uid(u32_at(body, MSG_UID)?))
    }

    /// A dual-stack client socket answers in IPv6 form (`::ffff:a.b.c.d`) to an IPv4 query.
    fn mapped_match(got: &[u8], want: &[u8; SOCKID_LEN]) -> bool {
        let mapped = |v4: &[u8]| {
            let mut a = [0u8; 16];
            a[10] = 0xff;
            a[11] = 0xff;
            a[12..].copy_from_slice(&v4[..4]);
            a
        };
        got[0..4] == want[0..4]
            && got[4..20] == mapped(&want[4..8])
            && got[20..36] == mapped(&want[20..24])
    }

    pub(super) fn lookup(client: SocketAddr, server: SocketAddr) -> io::Result<Owner> {
        // SAFETY: plain socket(2); the descriptor is owned (and closed) by OwnedFd.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval for SO_RCVTIMEO on our own socket.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let seq = std::process::id() ^ client.port() as u32;
        let msg = request(client, server, seq);
        // SAFETY: an all-zero sockaddr_nl addresses the kernel (nl_pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and kernel outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 512];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        parse_reply(&buf[..n as usize], &sockid(client, server), seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 0100007F:D431 0100007F:4E21 01 00000000:00000000 00:00000000 00000000  1001        0 222 1 0 20 4 30 10 -1
   2: 0100007F:4E21 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 20 4 30 10 -1
   3: 0100007F:D432 0100007F:4E21 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
";

    #[cfg(target_endian = "little")]
    const TABLE6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:D433 0000000000000000FFFF00000100007F:4E21 01 00000000:00000000 00:00000000 00000000  1002        0 444 1 0 20 4 30 10 -1
   1: 00000000000000000000000001000000:D434 00000000000000000000000001000000:4E21 01 00000000:00000000 00:00000000 00000000  1003        0 555 1 0 20 4 30 10 -1
";

    #[test]
    #[cfg(target_endian = "little")]
    fn finds_the_established_client_sockets_owner_in_both_tables() {
        let server: SocketAddr = "127.0.0.1:20001".parse().unwrap();
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(uid_from_proc(TABLE, at(54321), server), Some(1001));
        assert_eq!(uid_from_proc(TABLE, at(54329), server), None);
        // TIME_WAIT shows uid 0: it must not read as root.
        assert_eq!(uid_from_proc(TABLE, at(54322), server), None);
        assert_eq!(uid_from_proc("", at(54321), server), None);
        // A v4-mapped IPv6 client of the IPv4 listener.
        assert_eq!(uid_from_proc(TABLE6, at(54323), server), Some(1002));
        let v6 = |p: u16| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p));
        assert_eq!(uid_from_proc(TABLE6, v6(54324), v6(20001)), Some(1003));
    }

    #[test]
    fn only_our_user_and_root_connect_and_only_we_write() {
        let me = 1000;
        let table = [
            (Owner::Uid(1000), true),
            (Owner::Uid(0), true),
            (Owner::Uid(1001), false),
            (Owner::NotFound, false),
        ];
        for (owner, ok) in table {
            assert_eq!(may_connect(owner, me), ok, "{owner:?}");
        }
        assert!(may_write(1000, me));
        assert!(!may_write(0, me));
        assert!(may_write(0, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_sock_diag_request_has_network_order_ports_and_addresses() {
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let server: SocketAddr = "127.0.0.2:20001".parse().unwrap();
        let id = diag::sockid(client, server);
        assert_eq!(&id[0..2], &[0xd4, 0x31]);
        assert_eq!(&id[2..4], &[0x4e, 0x21]);
        assert_eq!(&id[4..8], &[127, 0, 0, 1]);
        assert_eq!(&id[20..24], &[127, 0, 0, 2]);
        let m = diag::request(client, server, 7);
        assert_eq!(m.len(), 72);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(&m[24..], &id[..]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_loopback_connection_is_ours_and_a_closed_one_is_nobodys() {
        let me = unsafe { libc::getuid() };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let stream = std::net::TcpStream::connect(server).unwrap();
        let client = stream.local_addr().unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client);
        assert_eq!(diag::lookup(client, server).unwrap(), Owner::Uid(me));
        assert_eq!(owner(client, server), Owner::Uid(me));
        assert!(may_connect(owner(client, server), me));
        // The same query through the tables.
        assert_eq!(proc_lookup(client, server), Owner::Uid(me));
        drop(stream);
        drop(accepted);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(owner(client, server), Owner::NotFound);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_v4_mapped_ipv6_client_is_found_too() {
        let me = unsafe { libc::getuid() };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
        let Ok(stream) = std::net::TcpStream::connect(mapped) else {
            return; // no IPv6 in this sandbox: nothing to check
        };
        let (_accepted, peer) = listener.accept().unwrap();
        assert!(peer.is_ipv4(), "the IPv4 listener sees {peer}");
        assert_ne!(stream.local_addr().unwrap().ip(), peer.ip());
        assert_eq!(
            owner(peer, listener.local_addr().unwrap()),
            Owner::Uid(me),
            "the owner of a v4-mapped client must be found"
        );
    }
}
