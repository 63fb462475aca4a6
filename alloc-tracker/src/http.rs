//! The live endpoint (feature `http`): the heap profile over HTTP, where Go's
//! `net/http/pprof` serves it, so that `go tool pprof http://HOST/debug/pprof/heap` and
//! continuous profilers (Parca, Pyroscope) can scrape a running program.
//!
//! | path | answer |
//! |---|---|
//! | `GET /debug/pprof/heap` | gzip pprof, `inuse_space` shown first; `?seconds=N` (1–3600): the change over the next N seconds, as Go's |
//! | `GET /debug/pprof/allocs` | the same profile with `alloc_space` shown first (`?seconds=N` too) |
//! | `GET /debug/alloc-tracker/report.json` | the JSON report |
//! | `GET /debug/pprof/` | a plain-text list of the above |
//!
//! Go's `gc=1` and `debug=0` parameters are accepted (and change nothing); any other
//! parameter, a bad value, another path or method gets a 4xx answer with a one-line reason.
//!
//! The server is a few threads of the tracker's own (see `threads`: signals blocked, tracker
//! code from start to end, so nothing they allocate counts as the program's memory): one
//! accepts, one per connection (at most [`MAX_CONNECTIONS`] at once, then `503`) answers
//! one request and closes. A failure (address in use, a client that hangs up) is one line
//! on stderr or nothing: the program goes on.

use crate::export::pprof::PprofOptions;
use crate::process::TRACKER_FDS;
use crate::spin::SpinLock;
use crate::symbolize::Naming;
use crate::threads::spawn;
use crate::{clock, output, process, snapshot};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

/// Connections answered at once; more get `503 Service Unavailable`.
pub const MAX_CONNECTIONS: usize = 4;
/// The longest request head read (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// The longest `?seconds=N` delta.
const MAX_SECONDS: u64 = 3600;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Serves the live endpoint on `address` from a thread of the tracker's own, and returns the
/// address bound (port `0` picks a free port).
///
/// The endpoint serves what the tracker in this process records: call it from a program
/// whose global allocator is a [`crate::Tracker`]. `ALLOC_TRACKER_HTTP=127.0.0.1:6060` does
/// the same without code. Bind to loopback unless the network is trusted: the profile names
/// the program's functions and files.
///
/// ```no_run
/// let address = alloc_tracker::serve("127.0.0.1:6060").expect("port 6060 is free");
/// println!("go tool pprof http://{address}/debug/pprof/heap");
/// ```
///
/// # Errors
/// When the address does not resolve or cannot be bound, or no thread can be started.
pub fn serve(address: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let local = listener.local_addr()?;
    spawn(Box::new(move || accept_loop(listener)))?;
    Ok(local)
}

/// Starts the server for `ALLOC_TRACKER_HTTP` (from the tracker's start-up, possibly inside
/// an allocation: only a thread is created here; it binds and says where on stderr).
pub(crate) fn start_from_env(address: SocketAddr) {
    *ENV_ADDRESS.lock() = Some(address);
    let started = spawn(Box::new(move || match TcpListener::bind(address) {
        Ok(listener) => {
            let bound = listener.local_addr().unwrap_or(address);
            let pid = std::process::id();
            output::warn(&format!(
                "serving /debug/pprof/heap on http://{bound} (pid {pid})"
            ));
            accept_loop(listener);
        }
        Err(e) => output::warn(&format!(
            "cannot serve /debug/pprof on {address} (ALLOC_TRACKER_HTTP): {e}; going on without it"
        )),
    }));
    if let Err(e) = started {
        output::warn(&format!(
            "cannot start the ALLOC_TRACKER_HTTP server thread: {e}"
        ));
    }
}

/// The listening sockets of this process's servers (-1: a free slot), so that a fork child
/// can close its copies: the port stays the parent's.
static LISTENERS: [AtomicI32; 8] = [const { AtomicI32::new(-1) }; 8];

/// The address `ALLOC_TRACKER_HTTP` asked for, if a server was started from it: a fork child
/// that goes on running serves on the same interface, on a port of its own.
static ENV_ADDRESS: SpinLock<Option<SocketAddr>> = SpinLock::new(None);

/// In a fork child: closes the listening sockets inherited from the parent.
pub(crate) fn after_fork_child() {
    for slot in &LISTENERS {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: `fd` is a listening socket of the parent's server, inherited by this
            // child, whose accepting thread did not come along; nothing else uses it here.
            unsafe { crate::sys::close_fd(fd) };
            TRACKER_FDS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// In a fork child that goes on running: serves `ALLOC_TRACKER_HTTP`'s interface again, on
/// a free port (said on stderr), if the parent served it.
pub(crate) fn restart_after_fork() {
    let address = *ENV_ADDRESS.lock();
    if let Some(mut address) = address {
        address.set_port(0);
        start_from_env(address);
    }
}

fn accept_loop(listener: TcpListener) {
    TRACKER_FDS.fetch_add(1, Ordering::Relaxed);
    if let Some(fd) = crate::sys::listener_fd(&listener) {
        let _ = LISTENERS.iter().find(|slot| {
            slot.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
    }
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => Connection::new(stream),
            Err(_) => {
                // Out of descriptors, or a connection reset before it was accepted.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if ACTIVE.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
            let mut stream = stream;
            let busy = Response::text(503, "too many requests at once; try again\n");
            let _ = busy.write_to(&mut stream.0, true);
            continue;
        }
        let answered = spawn(Box::new(move || {
            let mut stream = stream;
            answer(&mut stream.0);
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        }));
        if answered.is_err() {
            // The connection was dropped with the closure: it is closed.
            ACTIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An accepted connection, counted among the tracker's descriptors while open.
struct Connection(TcpStream);

impl Connection {
    fn new(stream: TcpStream) -> Self {
        TRACKER_FDS.fetch_add(1, Ordering::Relaxed);
        Self(stream)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        TRACKER_FDS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads one request, answers it, closes.
fn answer(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    let (response, head_only) = match read_head(stream) {
        Ok(head) => match parse_request(&head) {
            Ok(request) => (route(&request), request.head_only),
            Err(response) => (response, false),
        },
        Err(response) => (response, false),
    };
    let _ = response.write_to(stream, head_only);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads up to the end of the request head (`\r\n\r\n`).
fn read_head(stream: &mut impl Read) -> Result<Vec<u8>, Response> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(Response::text(431, "request head too large\n"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::text(400, "incomplete request\n")),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Response::text(408, "request timed out\n"))
            }
            Err(_) => return Err(Response::text(400, "unreadable request\n")),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// A `HEAD` request: answer without the body.
    head_only: bool,
    path: String,
    query: Vec<(String, String)>,
}

/// Parses the request line of `head` (headers are not needed).
fn parse_request(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::text(400, &format!("{why}\n"));
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let line =
        std::str::from_utf8(&head[..line_end]).map_err(|_| bad("request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Response::text(505, "HTTP/1.x only\n"));
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut response = Response::text(405, "only GET and HEAD are served\n");
            response.headers.push(("Allow", "GET, HEAD".to_string()));
            return Err(response);
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.starts_with('/') {
        return Err(bad("the request target must be a path"));
    }
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(Request {
        head_only,
        path: path.to_string(),
        query: pairs,
    })
}

const INDEX: &str = "alloc-tracker live endpoints:\n\
/debug/pprof/heap                  pprof (gzip), inuse_space first; ?seconds=N: the change over N seconds\n\
/debug/pprof/allocs                pprof (gzip), alloc_space first; ?seconds=N as for heap\n\
/debug/alloc-tracker/report.json   the JSON report\n";

/// The answer to a well-formed request.
fn route(request: &Request) -> Response {
    match request.path.as_str() {
        "/debug/pprof/heap" => profile(request, None),
        "/debug/pprof/allocs" => profile(request, Some("alloc_space")),
        "/debug/alloc-tracker/report.json" => {
            if let Some((key, _)) = request.query.first() {
                return Response::text(400, &format!("unknown parameter {key:?}\n"));
            }
            let report = snapshot::take_with(Naming::DebugInfo);
            let mut response =
                Response::new(200, "application/json", report.to_json().into_bytes());
            response
                .headers
                .push(("X-Content-Type-Options", "nosniff".to_string()));
            response
        }
        "/debug/pprof" | "/debug/pprof/" => Response::text(200, INDEX),
        _ => Response::text(
            404,
            &format!("no such endpoint; see /debug/pprof/\n{INDEX}"),
        ),
    }
}

/// A pprof profile of the heap now, or of its change over `?seconds=N`.
fn profile(request: &Request, default_sample_type: Option<&'static str>) -> Response {
    let mut seconds = None;
    for (key, value) in &request.query {
        match key.as_str() {
            "seconds" => match value.parse::<u64>() {
                Ok(n) if (1..=MAX_SECONDS).contains(&n) => seconds = Some(n),
                _ => {
                    return Response::text(
                        400,
                        &format!("seconds={value:?}: expected a whole number from 1 to {MAX_SECONDS}\n"),
                    )
                }
            },
            // Go's handlers take these; a heap without a garbage collector needs neither.
            "gc" if value == "0" || value == "1" => {}
            "debug" if value == "0" => {}
            "debug" => {
                return Response::text(
                    400,
                    "only debug=0 (the binary profile) is served; the text report is /debug/alloc-tracker/report.json\n",
                )
            }
            _ => return Response::text(400, &format!("unknown parameter {key:?}={value:?}\n")),
        }
    }
    let context = process::render_context();
    let mut options = PprofOptions {
        mappings: context.mappings,
        default_sample_type,
        time_nanos: context.time_nanos,
        ..PprofOptions::default()
    };
    let body = match seconds {
        None => snapshot::take_with(Naming::DebugInfo).to_pprof_gz_with(&options),
        Some(n) => {
            let base = snapshot::take_with(Naming::DebugInfo);
            std::thread::sleep(Duration::from_secs(n));
            let now = snapshot::take_with(Naming::DebugInfo);
            options.time_nanos = clock::unix_nanos_now();
            options.duration_nanos = i64::try_from(n).unwrap_or(0) * 1_000_000_000;
            now.to_pprof_delta_gz_with(&base, &options)
        }
    };
    let mut response = Response::new(200, "application/octet-stream", body);
    let name = request
        .path
        .rsplit('/')
        .next()
        .unwrap_or("heap")
        .to_string();
    response.headers.push((
        "Content-Disposition",
        format!("attachment; filename=\"{name}\""),
    ));
    response
        .headers
        .push(("X-Content-Type-Options", "nosniff".to_string()));
    response
}

/// An HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body,
        }
    }

    fn text(status: u16, text: &str) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            text.as_bytes().to_vec(),
        )
    }

    fn write_to(&self, out: &mut impl Write, head_only: bool) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        out.write_all(head.as_bytes())?;
        if !head_only {
            out.write_all(&self.body)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(head: &str) -> Result<Request, Response> {
        parse_request(head.as_bytes())
    }

    #[test]
    fn request_lines_are_parsed() {
        let r = request("GET /debug/pprof/heap?seconds=5&gc=1 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!(r.path, "/debug/pprof/heap");
        assert_eq!(
            r.query,
            [("seconds".into(), "5".into()), ("gc".into(), "1".into())]
        );
        assert_eq!(
            request("POST /debug/pprof/heap HTTP/1.1")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(request("GET /x HTTP/2").unwrap_err().status, 505);
        assert_eq!(request("GET  /x HTTP/1.1").unwrap_err().status, 400);
        assert_eq!(request("GET x HTTP/1.1").unwrap_err().status, 400);
        assert_eq!(request("\u{0}\u{1}").unwrap_err().status, 400);
        assert_eq!(parse_request(&[0xff, 0xfe, b' ']).unwrap_err().status, 400);
    }

    #[test]
    fn bad_paths_and_queries_get_4xx() {
        let route_of =
            |target: &str| route(&request(&format!("GET {target} HTTP/1.1")).unwrap()).status;
        assert_eq!(route_of("/nope"), 404);
        assert_eq!(route_of("/debug/pprof/heap?seconds=0"), 400);
        assert_eq!(route_of("/debug/pprof/heap?seconds=abc"), 400);
        assert_eq!(route_of("/debug/pprof/heap?seconds=99999"), 400);
        assert_eq!(route_of("/debug/pprof/heap?debug=1"), 400);
        assert_eq!(route_of("/debug/pprof/heap?color=blue"), 400);
        assert_eq!(route_of("/debug/alloc-tracker/report.json?x=1"), 400);
        assert_eq!(route_of("/debug/pprof/"), 200);
    }

    #[test]
    fn heads_are_read_to_their_end_and_bounded() {
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(read_head(&mut input).unwrap(), b"GET / HTTP/1.1\r\nHost: a");
        let mut cut: &[u8] = b"GET / HTTP/1.1\r\nHost";
        assert_eq!(read_head(&mut cut).unwrap_err().status, 400);
        let huge = vec![b'a'; MAX_HEAD + 2048];
        assert_eq!(read_head(&mut huge.as_slice()).unwrap_err().status, 431);
    }

    fn get(address: SocketAddr, request: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let end = find(&answer, b"\r\n\r\n").unwrap();
        let head = String::from_utf8(answer[..end].to_vec()).unwrap();
        (head, answer[end + 4..].to_vec())
    }

    #[test]
    fn the_server_answers_over_tcp() {
        let address = serve("127.0.0.1:0").unwrap();
        let (head, body) = get(address, "GET /debug/pprof/heap HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: application/octet-stream"));
        assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip");
        let (head, body) = get(address, "HEAD /debug/pprof/allocs HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(body.is_empty());
        let (head, _) = get(
            address,
            "GET /debug/alloc-tracker/report.json HTTP/1.0\r\n\r\n",
        );
        assert!(head.contains("application/json"), "{head}");
        let (head, _) = get(address, "GET /favicon.ico HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let (head, _) = get(address, "DELETE /debug/pprof/heap HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 405") && head.contains("Allow: GET, HEAD"),
            "{head}"
        );
        // A client that sends half a request and hangs up gets an answer, and the server
        // keeps serving.
        let (head, _) = get(address, "GET /debug/pp");
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let (head, _) = get(address, "GET /debug/pprof/ HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
}
