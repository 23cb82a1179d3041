//! A loopback TCP server on a runtime thread of its own, stopped and joined on drop: what
//! the test S3 server and the fault proxy share.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;

/// A running accept loop.
pub struct Serving {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Listens on `addr` (port 0: a free one) and runs `handle` on a task per connection.
    pub fn start<H, F>(addr: SocketAddr, handle: H) -> Serving
    where
        H: Fn(tokio::net::TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            if let Ok((socket, _)) = accepted {
                                tokio::spawn(handle(socket));
                            }
                        }
                        _ = &mut stopped => break,
                    }
                }
            });
            runtime.shutdown_background();
        });
        Serving {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
