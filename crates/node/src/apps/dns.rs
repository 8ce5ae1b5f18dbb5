//! An authoritative DNS server for the lab's names (A records over UDP, RFC 1035). Queries
//! are parsed and answers built with simple-dns; clients resolve with smoltcp's own DNS
//! socket, an independent implementation.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Name, OPCODE, Packet, PacketFlag, QTYPE, RCODE, ResourceRecord, TYPE};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;

/// TTL of the answers.
const TTL: u32 = 300;

/// A DNS server answering A queries from a fixed zone.
#[derive(Debug)]
pub struct Server {
    handle: SocketHandle,
    /// Lower-case names without the trailing dot.
    records: BTreeMap<String, Ipv4Addr>,
    pub answered: u64,
    pub nxdomain: u64,
    pub malformed: u64,
}

impl Server {
    pub(crate) fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        records: Vec<(String, Ipv4Addr)>,
    ) -> Server {
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 8192]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 16], vec![0; 8192]);
        let mut socket = udp::Socket::new(rx, tx);
        // Binding a fresh socket to a non-zero port cannot fail.
        let _ = socket.bind(port);
        Server {
            handle: sockets.add(socket),
            records: records
                .into_iter()
                .map(|(n, a)| (n.trim_end_matches('.').to_ascii_lowercase(), a))
                .collect(),
            answered: 0,
            nxdomain: 0,
            malformed: 0,
        }
    }

    pub(crate) fn poll(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let socket = sockets.get_mut::<udp::Socket>(self.handle);
        let mut progressed = false;
        let mut buf = [0u8; 1500];
        while socket.can_send() {
            let Ok((n, meta)) = socket.recv_slice(&mut buf) else {
                break;
            };
            progressed = true;
            match self.answer(&buf[..n]) {
                Some(reply) => {
                    // A full send queue loses the reply; the client retries.
                    let _ = socket.send_slice(&reply, meta.endpoint);
                }
                None => self.malformed += 1,
            }
        }
        progressed
    }

    /// The reply to a query, or `None` if it cannot be parsed at all (then nothing is sent,
    /// as there is no ID to answer to).
    fn answer(&mut self, query: &[u8]) -> Option<Vec<u8>> {
        let packet = match Packet::parse(query) {
            Ok(p) => p,
            Err(_) => {
                // Answer FORMERR if at least the ID is there (RFC 1035 4.1.1).
                let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
                let mut reply = Packet::new_reply(id);
                *reply.rcode_mut() = RCODE::FormatError;
                return reply.build_bytes_vec().ok();
            }
        };
        let mut reply = Packet::new_reply(packet.id());
        reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
        if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
            reply.set_flags(PacketFlag::RECURSION_DESIRED);
        }
        if packet.opcode() != OPCODE::StandardQuery || packet.questions.len() != 1 {
            *reply.rcode_mut() = RCODE::NotImplemented;
            return reply.build_bytes_vec().ok();
        }
        let question = packet.questions[0].clone();
        let name = question
            .qname
            .to_string()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let found = self.records.get(&name).copied();
        reply.questions.push(question.clone());
        match found {
            Some(addr) => {
                if matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY) {
                    reply.answers.push(ResourceRecord::new(
                        question.qname.clone(),
                        CLASS::IN,
                        TTL,
                        RData::A(A::from(addr)),
                    ));
                }
                self.answered += 1;
            }
            None => {
                *reply.rcode_mut() = RCODE::NameError;
                self.nxdomain += 1;
            }
        }
        reply.build_bytes_vec().ok()
    }
}

/// The name of a record as simple-dns wants it; checked when the lab file is loaded.
pub fn valid_name(name: &str) -> bool {
    Name::new(name).is_ok() && !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::iface::SocketSet;

    fn server() -> Server {
        let mut sockets = SocketSet::new(vec![]);
        Server::new(
            &mut sockets,
            53,
            vec![(
                "Portal.AzureStack.local".into(),
                Ipv4Addr::new(192, 168, 133, 74),
            )],
        )
    }

    /// A query for portal.azurestack.local A, as `dig` sends it (RD set, no EDNS).
    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn answers_case_insensitively_and_nxdomain_otherwise() {
        let mut s = server();
        let reply = s.answer(&query("portal.azurestack.local")).unwrap();
        // Header: same ID, QR+AA+RD, RCODE 0, one question, one answer.
        assert_eq!(&reply[0..2], &[0x12, 0x34]);
        assert_eq!(reply[2] & 0x80, 0x80);
        assert_eq!(reply[3] & 0x0f, 0);
        assert_eq!(&reply[6..8], &[0, 1]);
        assert!(reply.ends_with(&[192, 168, 133, 74]));
        let reply = s.answer(&query("nothing.azurestack.local")).unwrap();
        assert_eq!(reply[3] & 0x0f, 3);
        assert_eq!(s.nxdomain, 1);
        let reply = s.answer(&[0xab, 0xcd, 0xff]).unwrap();
        assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
        assert!(s.answer(&[0x01]).is_none());
    }
}

/// What a DNS lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReport {
    pub name: String,
    pub server: Option<Ipv4Addr>,
    pub addresses: Vec<Ipv4Addr>,
    pub error: Option<String>,
}

/// Creates the node's one resolver socket: smoltcp hands every answer from the server to
/// the first DNS socket that exists, so a node keeps one, with a slot per query in flight.
pub(crate) fn resolver(sockets: &mut SocketSet<'static>, server: Ipv4Addr) -> SocketHandle {
    let socket = smoltcp::socket::dns::Socket::new(
        &[smoltcp::wire::IpAddress::Ipv4(server)],
        (0..QUERY_SLOTS).map(|_| None).collect::<Vec<_>>(),
    );
    sockets.add(socket)
}

/// Lookups a node can have in flight at once.
const QUERY_SLOTS: usize = 32;

/// A DNS lookup client task, on the node's resolver socket (smoltcp retries on its own).
pub struct Lookup {
    socket: Option<(SocketHandle, smoltcp::socket::dns::QueryHandle)>,
    deadline: std::time::Duration,
    report: LookupReport,
    done: bool,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup")
            .field("report", &self.report)
            .field("done", &self.done)
            .finish()
    }
}

impl Lookup {
    pub(crate) fn start(
        now: std::time::Duration,
        cx: &mut smoltcp::iface::Context,
        sockets: &mut SocketSet<'static>,
        name: &str,
        resolver: Option<(SocketHandle, Ipv4Addr)>,
        timeout: std::time::Duration,
    ) -> Lookup {
        use smoltcp::socket::dns;
        let mut lookup = Lookup {
            socket: None,
            deadline: now + timeout,
            report: LookupReport {
                name: name.to_string(),
                server: resolver.map(|(_, s)| s),
                addresses: Vec::new(),
                error: None,
            },
            done: false,
        };
        let Some((socket, _)) = resolver else {
            lookup.report.error = Some("no DNS server configured".into());
            lookup.done = true;
            return lookup;
        };
        match sockets.get_mut::<dns::Socket>(socket).start_query(
            cx,
            name,
            smoltcp::wire::DnsQueryType::A,
        ) {
            Ok(query) => lookup.socket = Some((socket, query)),
            Err(e) => {
                lookup.report.error = Some(format!("cannot query {name:?}: {e:?}"));
                lookup.done = true;
            }
        }
        lookup
    }

    pub(crate) fn poll(
        &mut self,
        now: std::time::Duration,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        use smoltcp::socket::dns;
        let Some((handle, query)) = self.socket else {
            return false;
        };
        let result = if now >= self.deadline {
            // Still pending: free its slot of the shared resolver socket.
            sockets.get_mut::<dns::Socket>(handle).cancel_query(query);
            Err(Some("timed out".to_string()))
        } else {
            match sockets
                .get_mut::<dns::Socket>(handle)
                .get_query_result(query)
            {
                Err(dns::GetQueryResultError::Pending) => return false,
                Err(dns::GetQueryResultError::Failed) => {
                    Err(Some("no answer (NXDOMAIN or server failure)".to_string()))
                }
                Ok(addrs) => Ok(addrs
                    .iter()
                    .filter_map(|a| match a {
                        smoltcp::wire::IpAddress::Ipv4(v4) => Some(*v4),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    })
                    .collect::<Vec<_>>()),
            }
        };
        self.socket = None;
        self.done = true;
        match result {
            Ok(addrs) => self.report.addresses = addrs,
            Err(e) => self.report.error = e,
        }
        true
    }

    pub(crate) fn poll_at(&self) -> Option<std::time::Duration> {
        (!self.done).then_some(self.deadline)
    }

    pub(crate) fn report(&self) -> Option<&LookupReport> {
        self.done.then_some(&self.report)
    }
}
