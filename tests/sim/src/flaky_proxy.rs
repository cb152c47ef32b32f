//! A TCP proxy in front of a simulated vCenter that misbehaves on demand:
//! it delays traffic, resets connections, or swallows them, so that the
//! client's timeouts and retries can be tested against a real vcsim.
//!
//! TLS passes through untouched: the client still verifies the simulator's
//! certificate (by CA or thumbprint). The proxy listens on the simulator's
//! own loopback address, which the certificate names, on another port (at
//! most 32767, like the vCenter port a vmi spec accepts).
//!
//! The behaviour can be switched at any time ([`FlakyProxy::set`]); it
//! applies to connections already open as well as to new ones, chunk by
//! chunk. The proxy runs on a runtime of its own, so it works under any
//! test runtime, and it stops (closing every connection) when dropped.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::SimError;
use crate::vcsim::VCenterSim;

/// Which way data flows through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the vCenter (requests, uploads).
    ToServer,
    /// From the vCenter to the client (answers, downloads).
    ToClient,
}

/// What the proxy does with the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Forwards everything as it comes.
    Pass,
    /// Waits this long before opening each upstream connection and before
    /// forwarding each chunk (up to 64 KiB) in either direction: a slow
    /// vCenter or link that still works.
    Delay(Duration),
    /// Resets the next `count` connections as soon as they are accepted,
    /// before anything reaches the vCenter; then passes.
    ResetAtAccept {
        /// Connections to reset.
        count: u32,
    },
    /// Forwards `bytes` more bytes in `direction` (counted over all
    /// connections), then resets the connection that carries the next
    /// byte; `count` times (the byte budget starts again after each), then
    /// passes. `ToClient` with 0 bytes cuts the next answer: its request
    /// reached the vCenter, its answer never reaches the client.
    ResetAfter {
        /// The direction counted.
        direction: Direction,
        /// Bytes forwarded before each reset.
        bytes: u64,
        /// Resets to make.
        count: u32,
    },
    /// Resets a connection whose client spoke and got no answer for
    /// `after` (a vCenter slower than a load balancer's patience); `count`
    /// times, then passes.
    ResetSlowAnswers {
        /// How long the proxy waits for an answer.
        after: Duration,
        /// Resets to make.
        count: u32,
    },
    /// Forwards `bytes` more bytes in `direction`, then nothing more in
    /// that direction on any connection (the connections stay open): a
    /// transfer that stalls.
    StallAfter {
        /// The direction that stalls.
        direction: Direction,
        /// Bytes forwarded before the stall.
        bytes: u64,
    },
    /// Accepts connections and never answers: whatever arrives from either
    /// side is dropped, and no connection is closed.
    BlackHole,
}

/// What the proxy has seen and done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections reset by the proxy.
    pub resets: u64,
    /// Client turns: data from the client after the vCenter spoke (or
    /// first on a connection). One per HTTP request on a connection in use,
    /// plus one or two for each TLS handshake.
    pub requests: u64,
    /// Connections that accepted data the proxy then swallowed or held.
    pub swallowed: u64,
    /// Bytes forwarded to the vCenter.
    pub bytes_to_server: u64,
    /// Bytes forwarded to the client.
    pub bytes_to_client: u64,
}

/// The state shared by the proxy's tasks and its handle.
#[derive(Debug)]
struct State {
    behaviour: Behaviour,
    /// Bytes left before the next reset or stall.
    left: u64,
    stats: ProxyStats,
}

#[derive(Debug)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A proxy in front of one vCenter simulator.
#[derive(Debug)]
pub struct FlakyProxy {
    /// The address the proxy listens on: the simulator's own.
    pub server: String,
    /// The proxy's port (the simulator keeps its own).
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// What to do with one chunk read from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Forward it after `delay`.
    Forward { delay: Duration },
    /// Forward its first `first` bytes, then reset the connection.
    Reset { first: usize },
    /// Forward its first `first` bytes, then stop reading this direction.
    Hold { first: usize },
    /// Drop it.
    Swallow,
}

impl FlakyProxy {
    /// A proxy in front of `sim`, passing everything until told otherwise.
    pub fn in_front_of(sim: &VCenterSim) -> Result<FlakyProxy, SimError> {
        FlakyProxy::start(&sim.server, sim.port)
    }

    /// A proxy listening on `server` (a free port at most 32767) that
    /// forwards to `server:upstream_port`.
    pub fn start(server: &str, upstream_port: u16) -> Result<FlakyProxy, SimError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("flaky-proxy")
            .enable_all()
            .build()
            .map_err(|e| SimError::Setup(format!("proxy runtime: {e}")))?;
        let shared = Arc::new(Shared(Mutex::new(State {
            behaviour: Behaviour::Pass,
            left: 0,
            stats: ProxyStats::default(),
        })));
        let (listener, port) = {
            let _entered = runtime.enter();
            listen_at_most_32767(server)?
        };
        let upstream = format!("{server}:{upstream_port}");
        runtime.spawn(accept(listener, upstream, Arc::clone(&shared)));
        Ok(FlakyProxy {
            server: server.to_owned(),
            port,
            shared,
            runtime: Some(runtime),
        })
    }

    /// Switches to `behaviour` for connections open and to come.
    pub fn set(&self, behaviour: Behaviour) {
        let mut state = self.shared.lock();
        state.left = match &behaviour {
            Behaviour::ResetAfter { bytes, .. } | Behaviour::StallAfter { bytes, .. } => *bytes,
            _ => 0,
        };
        state.behaviour = behaviour;
    }

    /// The behaviour now (counted behaviours fall back to `Pass` when done).
    pub fn behaviour(&self) -> Behaviour {
        self.shared.lock().behaviour.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The receive buffer of the connections from the client: small, so
/// that an upload through a slow proxy waits for the proxy instead of
/// vanishing into the kernel's buffers (a slow link buffers little).
const CLIENT_RECEIVE_BUFFER: u32 = 64 << 10;

/// A listener on `server` at a free port in 20000..=32767, and the port.
fn listen_at_most_32767(server: &str) -> Result<(TcpListener, u16), SimError> {
    let setup = |e: io::Error| SimError::Setup(format!("proxy listener on {server}: {e}"));
    let ip: IpAddr = server
        .parse()
        .map_err(|e| SimError::Setup(format!("proxy address {server}: {e}")))?;
    let span = 32767 - 20000 + 1;
    let start = (std::process::id() as usize * 7919 + 4099) % span;
    for i in 0..span {
        let port = 20000 + ((start + i) % span) as u16;
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(setup)?;
        socket
            .set_recv_buffer_size(CLIENT_RECEIVE_BUFFER)
            .map_err(setup)?;
        if socket.bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok((socket.listen(128).map_err(setup)?, port));
        }
    }
    Err(SimError::Setup(format!(
        "no free port at most 32767 on {server} for the proxy"
    )))
}

async fn accept(listener: TcpListener, upstream: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve(client, upstream.clone(), Arc::clone(&shared)));
    }
}

/// Resets `stream`: an RST instead of an orderly close.
fn reset(stream: TcpStream, shared: &Shared) {
    shared.lock().stats.resets += 1; // counted before the client can see it
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// What happens to a connection just accepted.
enum Admission {
    Connect { delay: Duration },
    Reset,
    Swallow,
}

async fn serve(client: TcpStream, upstream: String, shared: Arc<Shared>) {
    let admission = {
        let mut guard = shared.lock();
        let state = &mut *guard;
        state.stats.connections += 1;
        match &mut state.behaviour {
            Behaviour::ResetAtAccept { count } => {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.behaviour = Behaviour::Pass;
                }
                Admission::Reset
            }
            Behaviour::BlackHole => Admission::Swallow,
            Behaviour::Delay(delay) => Admission::Connect { delay: *delay },
            _ => Admission::Connect {
                delay: Duration::ZERO,
            },
        }
    };
    match admission {
        Admission::Reset => reset(client, &shared),
        Admission::Swallow => {
            shared.lock().stats.swallowed += 1;
            swallow(&client).await;
        }
        Admission::Connect { delay } => {
            tokio::time::sleep(delay).await;
            match TcpStream::connect(&upstream).await {
                Ok(server) => relay(client, server, &shared).await,
                Err(_) => reset(client, &shared),
            }
        }
    }
}

/// Reads and drops everything until the peer closes.
async fn swallow(stream: &TcpStream) {
    let mut buffer = vec![0u8; 64 << 10];
    while let Ok(n) = read_some(stream, &mut buffer).await {
        if n == 0 {
            return;
        }
    }
}

/// The verdict on a chunk of `len` bytes flowing in `direction`.
fn judge(shared: &Shared, direction: Direction, len: usize) -> Verdict {
    let mut guard = shared.lock();
    let state = &mut *guard;
    let len64 = len as u64;
    let left = state.left;
    match &mut state.behaviour {
        Behaviour::Delay(delay) => Verdict::Forward { delay: *delay },
        Behaviour::BlackHole => Verdict::Swallow,
        Behaviour::ResetAfter {
            direction: counted,
            bytes,
            count,
        } if *counted == direction => {
            if left >= len64 {
                state.left -= len64;
                return Verdict::Forward {
                    delay: Duration::ZERO,
                };
            }
            *count = count.saturating_sub(1);
            let again = *bytes;
            if *count == 0 {
                state.behaviour = Behaviour::Pass;
            }
            state.left = again;
            Verdict::Reset {
                first: left as usize,
            }
        }
        Behaviour::StallAfter {
            direction: stalled, ..
        } if *stalled == direction => {
            if left >= len64 {
                state.left -= len64;
                Verdict::Forward {
                    delay: Duration::ZERO,
                }
            } else {
                state.left = 0;
                Verdict::Hold {
                    first: left as usize,
                }
            }
        }
        _ => Verdict::Forward {
            delay: Duration::ZERO,
        },
    }
}

/// Whether a connection whose client has waited since `since` for an
/// answer is to be reset now (and counts the reset against the behaviour).
fn too_slow(shared: &Shared, since: Instant) -> bool {
    let mut guard = shared.lock();
    let state = &mut *guard;
    if let Behaviour::ResetSlowAnswers { after, count } = &mut state.behaviour
        && since.elapsed() >= *after
    {
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.behaviour = Behaviour::Pass;
        }
        return true;
    }
    false
}

/// How a relayed connection ended.
enum End {
    Closed,
    Reset,
}

/// Relays between `client` and `server` chunk by chunk, as the behaviour
/// says at each chunk.
async fn relay(client: TcpStream, server: TcpStream, shared: &Shared) {
    let end = relay_until_end(&client, &server, shared).await;
    match end {
        End::Reset => reset(client, shared),
        End::Closed => drop(client),
    }
    drop(server);
}

async fn relay_until_end(client: &TcpStream, server: &TcpStream, shared: &Shared) -> End {
    let mut from_client = vec![0u8; 64 << 10];
    let mut from_server = vec![0u8; 64 << 10];
    let mut last_from_client = false;
    let mut waiting_since: Option<Instant> = None;
    let (mut hold_to_server, mut hold_to_client, mut swallowed) = (false, false, false);
    loop {
        let (direction, read) = tokio::select! {
            read = read_some(client, &mut from_client), if !hold_to_server => (Direction::ToServer, read),
            read = read_some(server, &mut from_server), if !hold_to_client => (Direction::ToClient, read),
            () = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Some(since) = waiting_since
                    && too_slow(shared, since)
                {
                    return End::Reset;
                }
                continue;
            }
        };
        let len = match read {
            Ok(0) | Err(_) => return End::Closed,
            Ok(len) => len,
        };
        let (chunk, to) = match direction {
            Direction::ToServer => (&from_client[..len], server),
            Direction::ToClient => (&from_server[..len], client),
        };
        match direction {
            Direction::ToServer => {
                if !last_from_client {
                    shared.lock().stats.requests += 1;
                }
                last_from_client = true;
                waiting_since = Some(Instant::now());
            }
            Direction::ToClient => {
                last_from_client = false;
                waiting_since = None;
            }
        }
        let (forward, then) = match judge(shared, direction, len) {
            Verdict::Forward { delay } => {
                tokio::time::sleep(delay).await;
                (len, None)
            }
            Verdict::Reset { first } => (first, Some(End::Reset)),
            Verdict::Hold { first } => {
                match direction {
                    Direction::ToServer => hold_to_server = true,
                    Direction::ToClient => hold_to_client = true,
                }
                (first, None)
            }
            Verdict::Swallow => (0, None),
        };
        if forward < len && then.is_none() && !swallowed {
            swallowed = true;
            shared.lock().stats.swallowed += 1;
        }
        if forward > 0 {
            if write_all(to, &chunk[..forward]).await.is_err() {
                return End::Closed;
            }
            let mut state = shared.lock();
            match direction {
                Direction::ToServer => state.stats.bytes_to_server += forward as u64,
                Direction::ToClient => state.stats.bytes_to_client += forward as u64,
            }
        }
        if let Some(end) = then {
            return end;
        }
    }
}

/// Reads what is there (at least one byte, or 0 at the end).
async fn read_some(stream: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Writes all of `bytes`.
async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
