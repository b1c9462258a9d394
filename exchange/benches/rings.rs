//! Ring throughput, both ends on one thread (the cost per entry of the
//! protocol itself: validation, atomics, frame accounting; no cross-core
//! traffic). `cargo bench -p exchange`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exchange::{ClientRegion, Geometry, Packet, RxMeta, ServerConfig, ServerRegion};

const BATCH: usize = 64;

fn pair() -> (ClientRegion, Vec<exchange::Frame>, ServerRegion) {
    let g = Geometry {
        rx_entries: 256,
        fill_entries: 256,
        small_slot_count: 256,
        frame_count: 256,
        ..Geometry::default()
    };
    ServerRegion::pair(g, &ServerConfig::default()).unwrap()
}

fn small(c: &mut Criterion) {
    let (mut client, _frames, mut server) = pair();
    let data = [7u8; 64];
    let meta = RxMeta {
        tag: 1,
        ..Default::default()
    };
    let mut g = c.benchmark_group("rx_small_64B");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("deliver+recv_batch", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                server.deliver_small(&data, &meta).unwrap();
            }
            server.publish().unwrap();
            let n = client.recv_batch(BATCH, |p| {
                std::hint::black_box(&p);
            });
            assert_eq!(n.unwrap(), BATCH);
        })
    });
    g.finish();
}

fn large(c: &mut Criterion) {
    let (mut client, mut frames, mut server) = pair();
    client.fill(&mut frames).unwrap();
    let meta = RxMeta {
        tag: 1,
        ..Default::default()
    };
    let mut back = Vec::with_capacity(BATCH);
    let mut g = c.benchmark_group("rx_frame_swap");
    g.throughput(Throughput::Elements(BATCH as u64));
    // Ownership moves by index only: no payload bytes are touched.
    g.bench_function("refill+deliver+recv+fill", |b| {
        b.iter(|| {
            server.refill().unwrap();
            for _ in 0..BATCH {
                let f = server.take_frame().unwrap();
                server.deliver_frame(f, 0, 1500, &meta).unwrap();
            }
            server.publish().unwrap();
            client
                .recv_batch(BATCH, |p| {
                    if let Packet::Large { frame, .. } = p {
                        back.push(frame);
                    }
                })
                .unwrap();
            assert_eq!(client.fill(&mut back).unwrap(), BATCH);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = small, large
}
criterion_main!(benches);
