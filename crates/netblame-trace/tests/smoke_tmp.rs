use netblame_trace::*;
use std::time::Duration;
#[test]
fn smoke() {
    let mut t = match Tracer::start(&Config::default()) { Ok(t) => t, Err(e) => panic!("{e}") };
    eprintln!("{:#?}", t.capabilities());
    eprintln!("drop names: {}", t.drop_reason_names());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let _c = std::net::TcpStream::connect(a).unwrap();
    let _ = std::net::TcpStream::connect("127.0.0.1:1");
    let mut n = 0;
    t.run_for(Duration::from_millis(500), &mut |e| { n += 1; if n < 30 { eprintln!("{}", serde_json::to_string(e).unwrap()); } });
    let s = t.finish(rmem_limits());
    eprintln!("{}", serde_json::to_string_pretty(&s).unwrap().chars().take(4000).collect::<String>());
}
