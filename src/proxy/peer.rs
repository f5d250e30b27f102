//! Who is on the other end of a loopback connection: the owner of the client socket, read from
//! `/proc/net/tcp`. The proxy serves only its own user and root (the nix-daemon), so a URL secret
//! that leaked into a log (Nix prints cache URLs) is of no use to other local users.

use std::net::SocketAddr;

/// The uid owning the local TCP socket `client` connected to `server`, from the text of
/// `/proc/net/tcp`. Addresses there are hex, little-endian on the machines Linux runs on for
/// the IPv4 word, the port big-endian: `0100007F:1F90` is 127.0.0.1:8080.
pub fn uid_from_proc(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let (SocketAddr::V4(c), SocketAddr::V4(s)) = (client, server) else {
        return None;
    };
    let enc = |a: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (want_local, want_remote) = (enc(c), enc(s));
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
        (f.len() > 7 && f[1] == want_local && f[2] == want_remote)
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

/// May this peer use the proxy? `None` when the owner cannot be found (then the URL secret
/// alone decides, as before).
pub fn allowed(client: SocketAddr, server: SocketAddr) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let uid = uid_from_proc(&table, client, server)?;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    Some(uid == me || uid == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 0100007F:D431 0100007F:4E21 01 00000000:00000000 00:00000000 00000000  1001        0 222 1 0 20 4 30 10 -1
   2: 0100007F:4E21 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0 20 4 30 10 -1
";

    #[test]
    fn finds_the_client_sockets_owner() {
        let client: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:20001".parse().unwrap();
        assert_eq!(uid_from_proc(TABLE, client, server), Some(1001));
        let other: SocketAddr = "127.0.0.1:54322".parse().unwrap();
        assert_eq!(uid_from_proc(TABLE, other, server), None);
        assert_eq!(uid_from_proc("", client, server), None);
    }

    #[test]
    fn a_real_loopback_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let stream = std::net::TcpStream::connect(server).unwrap();
        let client = stream.local_addr().unwrap();
        let _accepted = listener.accept().unwrap();
        assert_eq!(allowed(client, server), Some(true));
    }
}
