//! The web server of `scripts/bench-mux.sh`'s HTTP stage: a thread per connection,
//! HTTP/1.1 keep-alive, one small page for every GET. Python's `http.server` answers
//! about 1,500 requests a second on this machine, too few to load a load balancer.
//!
//! ```text
//! http_server ADDRESS:PORT
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

const BODY: &str = "<html><body>Strata benchmark page</body></html>\n";

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:80".into());
    let listener = TcpListener::bind(&addr)?;
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            // A connection that breaks ends its thread; the client counts the error.
            let _ = serve(stream);
        });
    }
    Ok(())
}

/// Answers requests on one connection until the client closes it or asks to.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        // The request line and headers, up to the blank line.
        let mut close = false;
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if first {
                close = line.ends_with("HTTP/1.0\r\n");
                first = false;
            }
            let header = line.to_ascii_lowercase();
            if header.starts_with("connection:") {
                close = header.contains("close");
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{BODY}",
            BODY.len()
        )?;
        if close {
            return Ok(());
        }
    }
}
