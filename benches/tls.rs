//! Leaf minting: a cold mint (sign a new leaf, build a rustls config) vs a
//! cache hit, the cost every intercepted CONNECT pays.

use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use lantern::tls::CertificateAuthority;

fn leaf(c: &mut Criterion) {
    let ca = CertificateAuthority::generate().expect("CA");
    let mut group = c.benchmark_group("leaf");
    let n = AtomicUsize::new(0);
    group.bench_function("mint_cold", |b| {
        b.iter(|| {
            let host = format!("h{}.example.test", n.fetch_add(1, Ordering::Relaxed));
            ca.mint(&host).expect("mint")
        })
    });
    ca.server_config("api.openai.com").expect("warm");
    group.bench_function("cache_hit", |b| {
        b.iter(|| ca.server_config("api.openai.com").expect("hit"))
    });
    group.finish();
}

criterion_group!(benches, leaf);
criterion_main!(benches);
