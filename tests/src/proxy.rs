//! A TCP proxy a test can cut: stands between hoard and a service (PostgreSQL)
//! to make that service unreachable and reachable again. While blocked, open
//! connections are cut and new ones are accepted but never answered, like a
//! server behind a dropped route: the case where a client without timeouts hangs.

use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct TcpProxy {
    pub port: u16,
    blocked: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl TcpProxy {
    /// Forwards connections on a free local port to `target` (host:port).
    pub fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().unwrap().port();
        let blocked = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_string();
        {
            let blocked = blocked.clone();
            let open = open.clone();
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    if blocked.load(Ordering::SeqCst) {
                        open.lock().unwrap().push(client);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let pairs = [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ];
                    for pair in pairs {
                        if let (Ok(mut from), Ok(mut to)) = pair {
                            std::thread::spawn(move || {
                                let _ = copy(&mut from, &mut to);
                                let _ = to.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    let mut open = open.lock().unwrap();
                    open.push(client);
                    open.push(server);
                }
            });
        }
        TcpProxy {
            port,
            blocked,
            open,
        }
    }

    /// Cuts every open connection; new ones hang.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
