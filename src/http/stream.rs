//! The byte stream under a connection: plain TCP, or TLS over TCP.
//!
//! Both the HTTP loop and the WebSocket session are written against readiness: wait until
//! the socket is readable or writable, then read or write without blocking until it would
//! block. tokio-rustls offers only `AsyncRead`/`AsyncWrite`, so after its handshake the
//! connection is taken apart and rustls is driven here by hand over the same `TcpStream`,
//! with the same readiness calls. The plain variant passes straight through to the socket:
//! no extra copy, allocation or syscall on the path every unencrypted frame takes.
//!
//! TLS keeps up to rustls's buffer limit (64 KiB) of encrypted output of its own: bytes a
//! [`Stream::try_write`] accepted are in rustls, and [`Stream::try_flush`] says when they
//! have all reached the socket.

use std::io::{self, ErrorKind, Read, Write};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

/// A connection's socket, encrypted or not.
pub(crate) enum Stream {
    Plain(TcpStream),
    /// Boxed: rustls's connection state is about a kilobyte, which a plain connection should
    /// not carry.
    Tls(Box<TlsConn>),
}

/// rustls over a non-blocking socket.
pub(crate) struct TlsConn {
    tcp: TcpStream,
    tls: ServerConnection,
    /// Decrypted bytes may be waiting in rustls though the socket has nothing new, so the
    /// next `readable` must not wait for the socket.
    maybe_buffered: bool,
}

impl Stream {
    /// A connection whose TLS handshake tokio-rustls completed.
    pub(crate) fn tls(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Stream {
        let (tcp, tls) = stream.into_inner();
        Stream::Tls(Box::new(TlsConn {
            tcp,
            tls,
            // The client's first request may have come with its last handshake message.
            maybe_buffered: true,
        }))
    }

    /// The socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.tcp,
        }
    }

    /// Waits until [`Stream::try_read`] may have something.
    #[inline]
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.readable().await,
            Stream::Tls(t) if t.maybe_buffered => Ok(()),
            Stream::Tls(t) => t.tcp.readable().await,
        }
    }

    /// Waits until the socket takes more bytes.
    #[inline]
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// Reads what is available without waiting: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is.
    #[inline]
    pub(crate) fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_read(buf),
            Stream::Tls(t) => t.try_read(buf),
        }
    }

    /// Writes what the socket takes without waiting, or `WouldBlock`.
    #[inline]
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_write(buf),
            Stream::Tls(t) => t.try_write(buf),
        }
    }

    /// Writes out encrypted bytes that are still held back; true when none are left (always,
    /// for plain TCP).
    #[inline]
    pub(crate) fn try_flush(&mut self) -> io::Result<bool> {
        match self {
            Stream::Plain(_) => Ok(true),
            Stream::Tls(t) => t.flush(),
        }
    }

    /// Waits for bytes and reads them: `Ok(0)` at end of stream.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.readable().await?;
            match self.try_read(buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Writes all of `buf`, and for TLS everything it became.
    pub(crate) async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if let Stream::Plain(s) = self {
            return s.write_all(buf).await;
        }
        while !buf.is_empty() {
            match self.try_write(buf) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    async fn flush(&mut self) -> io::Result<()> {
        while !self.try_flush()? {
            self.writable().await?;
        }
        Ok(())
    }

    /// Ends our side of the stream: for TLS a `close_notify` alert first, then a TCP
    /// half-close.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        if let Stream::Tls(t) = self {
            t.tls.send_close_notify();
            self.flush().await?;
        }
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(t) => t.tcp.shutdown().await,
        }
    }
}

impl TlsConn {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0) here is the peer's close_notify.
                Ok(n) => {
                    // rustls fills `buf` while it has bytes: a short read emptied it.
                    self.maybe_buffered = n == buf.len() && n > 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    self.process()?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Whole records rustls has not decrypted yet, if any, come first.
                    let state = self.process()?;
                    if state == 0 {
                        self.maybe_buffered = false;
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decrypts whole records; returns the plaintext bytes waiting. Sends what rustls has to
    /// say (an alert, a key update) as far as the socket takes it.
    fn process(&mut self) -> io::Result<usize> {
        match self.tls.process_new_packets() {
            Ok(state) => {
                if self.tls.wants_write() {
                    self.flush()?;
                }
                Ok(state.plaintext_bytes_to_read())
            }
            Err(e) => {
                let _ = self.flush();
                Err(io::Error::new(ErrorKind::InvalidData, e))
            }
        }
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // At most one buffer's worth waits inside rustls, so output stays bounded by the
        // socket, as for plain TCP.
        if !self.flush()? {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(buf)?;
        self.flush()?;
        Ok(n)
    }

    /// Writes encrypted records to the socket until none are left (true) or it would block.
    fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// `std::io` over a tokio socket's non-blocking calls, which clear its readiness on
/// `WouldBlock` as the awaiting side expects.
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    /// rustls writes its records as separate slices; one syscall takes them all.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
