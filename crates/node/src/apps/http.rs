//! A small HTTP/1.1 server and client over smoltcp TCP sockets. Heads are parsed with
//! httparse; every exchange is one request per connection (`Connection: close`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use smoltcp::iface::{Context, SocketHandle, SocketSet};
use smoltcp::socket::{dns, tcp};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::tcp_socket;

const BUFFER: usize = 16 * 1024;
/// Largest request or response head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// A page the server answers with.
#[derive(Debug, Clone)]
pub struct Page {
    pub path: String,
    pub body: String,
    /// How long the server waits before it answers (a slow backend, a long download).
    pub delay: Duration,
}

#[derive(Debug)]
struct Conn {
    handle: SocketHandle,
    request: Vec<u8>,
    response: Vec<u8>,
    sent: usize,
    answered: bool,
    /// When the response may start (a page's delay).
    respond_at: Duration,
}

/// An HTTP server listening on one port with a fixed set of pages.
#[derive(Debug)]
pub struct Server {
    port: u16,
    pages: Vec<Page>,
    conns: Vec<Conn>,
    /// A stopped server resets its connections and does not listen.
    enabled: bool,
    /// Requests answered, by status.
    pub served: u64,
    pub bad_requests: u64,
}

impl Server {
    /// Opens `backlog` listening sockets: that many connections can be open at once.
    pub(crate) fn new(
        sockets: &mut SocketSet<'static>,
        port: u16,
        pages: Vec<Page>,
        backlog: usize,
    ) -> Server {
        let conns = (0..backlog.max(1))
            .map(|_| Conn {
                handle: tcp_socket(sockets, BUFFER),
                request: Vec::new(),
                response: Vec::new(),
                sent: 0,
                answered: false,
                respond_at: Duration::ZERO,
            })
            .collect();
        Server {
            port,
            pages,
            conns,
            enabled: true,
            served: 0,
            bad_requests: 0,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops (resetting every connection) or starts the server.
    pub(crate) fn set_enabled(&mut self, enabled: bool, sockets: &mut SocketSet<'static>) {
        self.enabled = enabled;
        if !enabled {
            for conn in &mut self.conns {
                sockets.get_mut::<tcp::Socket>(conn.handle).abort();
                conn.request.clear();
                conn.response.clear();
                conn.sent = 0;
                conn.answered = false;
            }
        }
    }

    /// When a delayed response is due.
    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.conns
            .iter()
            .filter(|c| self.enabled && c.answered && c.sent == 0 && !c.response.is_empty())
            .map(|c| c.respond_at)
            .min()
    }

    /// Serves what can be served; true if anything moved.
    pub(crate) fn poll(&mut self, now: Duration, sockets: &mut SocketSet<'static>) -> bool {
        let mut progressed = false;
        for conn in &mut self.conns {
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            if !self.enabled {
                continue;
            }
            if !socket.is_open() {
                conn.request.clear();
                conn.response.clear();
                conn.sent = 0;
                conn.answered = false;
                // Listening cannot fail on a closed socket with a non-zero port.
                let _ = socket.listen(self.port);
                progressed = true;
                continue;
            }
            if !conn.answered && socket.can_recv() {
                let mut chunk = [0u8; 2048];
                while let Ok(n) = socket.recv_slice(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    conn.request.extend_from_slice(&chunk[..n]);
                    progressed = true;
                }
                if let Some((response, delay)) = answer(&self.pages, &conn.request) {
                    conn.respond_at = now + delay;
                    progressed = true;
                    if response.starts_with(b"HTTP/1.1 400")
                        || response.starts_with(b"HTTP/1.1 431")
                    {
                        self.bad_requests += 1;
                    } else {
                        self.served += 1;
                    }
                    conn.response = response;
                    conn.answered = true;
                }
            }
            if conn.answered
                && now >= conn.respond_at
                && conn.sent < conn.response.len()
                && socket.can_send()
            {
                if let Ok(n) = socket.send_slice(&conn.response[conn.sent..]) {
                    conn.sent += n;
                    progressed = true;
                }
                if conn.sent == conn.response.len() {
                    socket.close();
                }
            }
            if !conn.answered && socket.state() == tcp::State::CloseWait {
                // The client closed without a complete request.
                socket.close();
            }
        }
        progressed
    }
}

/// The response to a request head once the head is complete, and how long to wait before
/// sending it.
fn answer(pages: &[Page], request: &[u8]) -> Option<(Vec<u8>, Duration)> {
    let now = |r: Vec<u8>| Some((r, Duration::ZERO));
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if request.len() <= MAX_HEAD => return None,
        Ok(httparse::Status::Partial) => {
            return now(response(431, "Request Header Fields Too Large", ""));
        }
        Err(_) => return now(response(400, "Bad Request", "bad request\n")),
    }
    let path = req.path.unwrap_or("/");
    if req.method != Some("GET") && req.method != Some("HEAD") {
        return now(response(405, "Method Not Allowed", "method not allowed\n"));
    }
    match pages.iter().find(|p| p.path == path) {
        Some(page) => Some((response(200, "OK", &page.body), page.delay)),
        None => now(response(404, "Not Found", "not found\n")),
    }
}

fn response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: strata\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What an HTTP GET found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReport {
    pub url: String,
    /// The name looked up over DNS and its answer, when the URL names a host.
    pub resolved: Option<(String, Ipv4Addr)>,
    pub server: Option<SocketAddrV4>,
    pub local_port: u16,
    pub status: Option<u16>,
    pub body: String,
    pub error: Option<String>,
    /// Time from start to the last byte.
    pub elapsed: Duration,
}

enum State {
    Resolving {
        socket: SocketHandle,
        query: dns::QueryHandle,
    },
    Connecting,
    Receiving,
    Done,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Resolving { .. } => "Resolving",
            State::Connecting => "Connecting",
            State::Receiving => "Receiving",
            State::Done => "Done",
        })
    }
}

/// An HTTP GET client task: resolve (if needed), connect, request, read to close.
#[derive(Debug)]
pub struct Get {
    host: String,
    port: u16,
    path: String,
    started: Duration,
    deadline: Duration,
    /// `None` once handed back to the node by [`Get::take_socket`].
    tcp: Option<SocketHandle>,
    state: State,
    response: Vec<u8>,
    report: GetReport,
}

/// Splits `http://host[:port]/path`.
pub fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

impl Get {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
        url: &str,
        timeout: Duration,
        local_port: u16,
        dns: Option<SocketHandle>,
    ) -> Get {
        let mut report = GetReport {
            url: url.to_string(),
            resolved: None,
            server: None,
            local_port,
            status: None,
            body: String::new(),
            error: None,
            elapsed: Duration::ZERO,
        };
        let tcp = tcp_socket(sockets, BUFFER);
        let mut get = Get {
            host: String::new(),
            port: 80,
            path: "/".into(),
            started: now,
            deadline: now + timeout,
            tcp: Some(tcp),
            state: State::Done,
            response: Vec::new(),
            report: report.clone(),
        };
        let (host, port, path) = match parse_url(url) {
            Ok(parts) => parts,
            Err(e) => {
                report.error = Some(e);
                get.report = report;
                return get;
            }
        };
        get.host = host;
        get.port = port;
        get.path = path;
        get.report = report;
        match get.host.parse::<Ipv4Addr>() {
            Ok(ip) => get.connect(cx, sockets, ip),
            Err(_) => match dns {
                None => get.fail(now, "no DNS server configured".into()),
                Some(socket) => {
                    let resolver = sockets.get_mut::<dns::Socket>(socket);
                    match resolver.start_query(cx, &get.host, smoltcp::wire::DnsQueryType::A) {
                        Ok(query) => get.state = State::Resolving { socket, query },
                        Err(e) => get.fail(now, format!("DNS query for {}: {e:?}", get.host)),
                    }
                }
            },
        }
        get
    }

    fn connect(&mut self, cx: &mut Context, sockets: &mut SocketSet<'static>, ip: Ipv4Addr) {
        self.report.server = Some(SocketAddrV4::new(ip, self.port));
        let Some(handle) = self.tcp else {
            return;
        };
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), self.port);
        match socket.connect(cx, remote, self.report.local_port) {
            Ok(()) => self.state = State::Connecting,
            Err(e) => {
                self.report.error = Some(format!("connect to {ip}:{}: {e:?}", self.port));
                self.state = State::Done;
            }
        }
    }

    fn fail(&mut self, now: Duration, why: String) {
        self.report.error = Some(why);
        self.report.elapsed = now - self.started;
        self.state = State::Done;
    }

    pub(crate) fn poll(
        &mut self,
        now: Duration,
        cx: &mut Context,
        sockets: &mut SocketSet<'static>,
    ) -> bool {
        let Some(handle) = self.tcp.filter(|_| !matches!(self.state, State::Done)) else {
            return false;
        };
        if now >= self.deadline {
            if let State::Resolving { socket, query } = self.state {
                // Still pending (a finished query left this state): free its slot.
                sockets.get_mut::<dns::Socket>(socket).cancel_query(query);
            }
            sockets.get_mut::<tcp::Socket>(handle).abort();
            self.fail(
                now,
                format!("timed out after {:?}", self.deadline - self.started),
            );
            return true;
        }
        match self.state {
            State::Resolving { socket, query } => {
                let dns = sockets.get_mut::<dns::Socket>(socket);
                match dns.get_query_result(query) {
                    Err(dns::GetQueryResultError::Pending) => false,
                    Err(dns::GetQueryResultError::Failed) => {
                        self.fail(now, format!("DNS lookup of {} failed", self.host));
                        true
                    }
                    Ok(addrs) => {
                        match addrs.iter().find_map(|a| match a {
                            IpAddress::Ipv4(v4) => Some(*v4),
                            #[allow(unreachable_patterns)]
                            _ => None,
                        }) {
                            Some(ip) => {
                                self.report.resolved = Some((self.host.clone(), ip));
                                self.connect(cx, sockets, ip);
                            }
                            None => self.fail(now, format!("no A record for {}", self.host)),
                        }
                        true
                    }
                }
            }
            State::Connecting => {
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                if socket.may_send() {
                    let request = format!(
                        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata\r\nConnection: close\r\n\r\n",
                        self.path, self.host
                    );
                    // A fresh 16 KiB buffer holds a request head of this size.
                    let _ = socket.send_slice(request.as_bytes());
                    self.state = State::Receiving;
                    true
                } else if !socket.is_open() {
                    self.fail(now, "connection refused or reset".into());
                    true
                } else {
                    false
                }
            }
            State::Receiving => {
                let socket = sockets.get_mut::<tcp::Socket>(handle);
                let mut progressed = false;
                let mut chunk = [0u8; 2048];
                while let Ok(n) = socket.recv_slice(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    self.response.extend_from_slice(&chunk[..n]);
                    progressed = true;
                }
                if !socket.may_recv() {
                    socket.close();
                    self.finish(now);
                    return true;
                }
                if self.response.len() > MAX_HEAD + BUFFER * 4 {
                    socket.abort();
                    self.fail(now, "response too large".into());
                    return true;
                }
                progressed
            }
            State::Done => false,
        }
    }

    fn finish(&mut self, now: Duration) {
        self.report.elapsed = now - self.started;
        self.state = State::Done;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&self.response) {
            Ok(httparse::Status::Complete(head)) => {
                self.report.status = resp.code;
                self.report.body = String::from_utf8_lossy(&self.response[head..]).into_owned();
            }
            Ok(httparse::Status::Partial) => {
                self.report.error = Some("connection closed before the response head ended".into())
            }
            Err(e) => self.report.error = Some(format!("malformed response: {e}")),
        }
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        (!matches!(self.state, State::Done)).then_some(self.deadline)
    }

    pub(crate) fn report(&self) -> Option<&GetReport> {
        matches!(self.state, State::Done).then_some(&self.report)
    }

    /// Once done, the TCP socket (once), for the node to remove when it has closed.
    pub(crate) fn take_socket(&mut self) -> Option<SocketHandle> {
        if matches!(self.state, State::Done) {
            self.tcp.take()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://portal.azurestack.local/").unwrap(),
            ("portal.azurestack.local".into(), 80, "/".into())
        );
        assert_eq!(
            parse_url("http://203.0.113.1:8080/x?y").unwrap(),
            ("203.0.113.1".into(), 8080, "/x?y".into())
        );
        assert!(parse_url("https://a/").is_err());
        assert!(parse_url("http://a:99999/").is_err());
        assert!(parse_url("http://:80/").is_err());
    }

    #[test]
    fn server_answers() {
        let pages = vec![Page {
            path: "/".into(),
            body: "hello".into(),
            delay: Duration::ZERO,
        }];
        let answer = |p: &[Page], r: &[u8]| super::answer(p, r).map(|(r, _)| r);
        assert_eq!(
            answer(&pages, b"GET / HTTP/1.1\r\nHost: x\r\n"),
            None,
            "head not complete"
        );
        let ok = answer(&pages, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(ok.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with(b"\r\n\r\nhello"));
        let missing = answer(&pages, b"GET /nope HTTP/1.1\r\n\r\n").unwrap();
        assert!(missing.starts_with(b"HTTP/1.1 404"));
        let bad = answer(&pages, b"\x00\x01 garbage\r\n\r\n").unwrap();
        assert!(bad.starts_with(b"HTTP/1.1 400"));
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert!(answer(&pages, &huge).is_some());
    }
}
