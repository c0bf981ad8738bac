//! `parley-server`: flags to config, bind, serve until SIGINT or SIGTERM; with TLS, reload the
//! certificate on SIGHUP.

use std::process::ExitCode;

use parley::config::{self, Parsed};

fn main() -> ExitCode {
    let cfg = match config::parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(cfg)) => *cfg,
        Ok(Parsed::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("{}", config::version());
            return ExitCode::SUCCESS;
        }
        Err(reason) => {
            eprintln!("parley-server: {reason}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: parley::Config) -> ExitCode {
    parley::logging::init(&cfg);
    let tls = match parley::tls::Tls::from_config(&cfg) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("parley-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(tls) = &tls {
        if let Err(e) = tls.reload_on_sighup() {
            eprintln!("parley-server: cannot watch for SIGHUP: {e}");
            return ExitCode::FAILURE;
        }
    }
    let listener = match parley::bind(&cfg.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("parley-server: cannot listen on {}: {e}", cfg.bind);
            return ExitCode::FAILURE;
        }
    };
    let core = match parley::start(cfg) {
        Ok(core) => core,
        Err(e) => {
            eprintln!("parley-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = stop_signal();
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("parley-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Serving starts at once: a cluster node answers 503 until it has caught up (see
    // `/healthz`), and a signal stops it also while it waits for NATS.
    let (quit, mut quit_rx) = tokio::sync::watch::channel(false);
    let quit = std::sync::Arc::new(quit);
    let stopped = quit_rx.clone();
    let server = tokio::spawn(parley::run_with_tls(
        listener,
        core.clone(),
        tls,
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|q| *q).await;
        },
    ));
    let on_signal = quit.clone();
    tokio::spawn(async move {
        stop.await;
        on_signal.send_replace(true);
    });
    let mut cluster = None;
    if !core.cfg.cluster_nats.is_empty() {
        tracing::info!(
            "listening on {addr}; every call but /healthz and /metrics answers 503 until this \
             node has caught up with the cluster"
        );
        tokio::select! {
            joined = parley::join_cluster(&core, addr.port()) => match joined {
                Ok(c) => cluster = Some(c),
                Err(e) => {
                    eprintln!("parley-server: {e}");
                    quit.send_replace(true);
                    let _ = server.await;
                    return ExitCode::FAILURE;
                }
            },
            _ = quit_rx.wait_for(|q| *q) => {
                tracing::info!("shutting down before this node caught up with the cluster");
                let _ = server.await;
                tracing::info!("stopped");
                return ExitCode::SUCCESS;
            }
        }
    }
    println!("parley listening on {addr}");
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        addr = %addr,
        "parley-server {} started on {addr}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = server.await;
    tracing::info!("shutting down: connections closed, flushing the journal");
    core.end_run();
    if let Some(cluster) = &cluster {
        cluster.flush(std::time::Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| cluster.save_local(&core));
    }
    tokio::task::block_in_place(|| core.store().close());
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: it is called before the listening line, so a SIGTERM sent as
/// soon as that line is read still stops the server cleanly.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}
