//! The host itself: serving, routing and Spin's request headers.

use support::{root, TestApp};

fn hello() -> std::path::PathBuf {
    root().join("tests/fixtures/hello/spin.toml")
}

#[tokio::test]
async fn serves_a_component_in_process() {
    let app = TestApp::start(&hello(), &[]).await;
    let response = app.get("/anything?x=1").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
}

#[tokio::test]
async fn serves_over_tcp_until_shutdown() {
    let app = TestApp::start(&hello(), &[]).await;
    let listener = spin_host::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spin_host::server::serve(app.app.clone(), listener, async {
        let _ = stopped.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\r\nhello\r\n"), "{reply}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "listener closed after shutdown");
}

#[tokio::test]
async fn a_port_in_use_is_reported_plainly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = spin_host::server::bind(taken.local_addr().unwrap()).await.unwrap_err().to_string();
    assert!(error.contains("--listen"), "{error}");
}
