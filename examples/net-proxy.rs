//! The egress proxy engine on loopback, for benchmarks and manual checks (scripts/bench-proxy).
//!
//!   net-proxy upstream [ADDR]     a fast HTTP server: GET /bytes/N sends N bytes, /delay/MS
//!                                 answers after MS milliseconds; prints its port
//!   net-proxy proxy ADDR [--allow E]... [--deny E]... [--allow-private CIDR]...
//!                   [--map NAME=IP]...
//!                                 the engine in explicit mode on ADDR; prints its port, runs
//!                                 until stdin closes, then prints the summary as JSON
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use shellcage::net::{
    Config, Engine, Listeners, Resolver, StaticResolver, SystemResolver, rules::RuleSet,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("upstream") => upstream(args.get(1).map_or("127.0.0.1:0", String::as_str)),
        Some("proxy") => proxy(&args[1..]),
        _ => {
            eprintln!(
                "usage: net-proxy upstream [ADDR] | proxy ADDR [--allow E] [--deny E] [--allow-private CIDR] [--map NAME=IP]"
            );
            std::process::exit(2);
        }
    }
}

fn upstream(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    println!("{}", l.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    for s in l.incoming().flatten() {
        std::thread::spawn(move || serve(s));
    }
}

fn serve(mut s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_string();
    if let Some(ms) = path.strip_prefix("/delay/") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        return;
    }
    let n: u64 = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let _ = s.write_all(
        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let buf = vec![b'x'; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        if s.write_all(&buf[..k]).is_err() {
            return;
        }
        left -= k as u64;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = r.read(&mut [0u8; 1]);
}

fn proxy(args: &[String]) {
    let listen = args.first().expect("ADDR");
    let (mut allow, mut deny, mut private, mut map) = (vec![], vec![], vec![], vec![]);
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().expect("value").clone();
        match flag.as_str() {
            "--allow" => allow.push(value),
            "--deny" => deny.push(value),
            "--allow-private" => private.push(value),
            "--map" => map.push(value),
            other => panic!("unknown flag {other}"),
        }
    }
    let rules = RuleSet::new(&allow, &deny, &private).unwrap_or_else(|e| panic!("{e}"));
    let resolver: Arc<dyn Resolver> = if map.is_empty() {
        Arc::new(SystemResolver)
    } else {
        let entries: Vec<(String, IpAddr)> = map
            .iter()
            .map(|m| {
                let (n, ip) = m.split_once('=').expect("NAME=IP");
                (n.to_string(), ip.parse().expect("IP"))
            })
            .collect();
        Arc::new(StaticResolver::new(
            entries.iter().map(|(n, ip)| (n.as_str(), *ip)),
        ))
    };
    let l = TcpListener::bind(listen.as_str()).expect("bind");
    println!("{}", l.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let listeners = Listeners {
        explicit: vec![l],
        ..Listeners::default()
    };
    let engine = Engine::start(Config::new(rules), listeners, resolver, None).expect("engine");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let stats = engine.stats();
    let summary = engine.stop();
    eprintln!("stats: {stats:?}");
    if let Some(line) = summary.exit_line() {
        eprintln!("{line}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summary.report()).unwrap()
    );
}
