//! The hand-over from splice to the maps: in a pause, while streaming, into a slow receiver,
//! and the rule that a pump stopped inside an skb is not handed over; a short flow never is.

use super::*;

/// The hand-over from splice to the maps, in a pause of both ends after 1 MiB each way: the
/// flow must end up in the kernel, with every byte and both FINs passed on.
#[test]
fn hand_over_in_a_pause_loses_nothing() {
    for _ in 0..5 {
        let report = stream_both_ways(
            Plane::SockmapHandOver,
            (4 << 20, 16 << 10),
            1 << 20,
            HAND_OVER_AFTER * 10,
        );
        assert!(
            report.spliced_in_kernel,
            "the flow was handed over to the maps"
        );
    }
}

/// The hand-over at whatever moment it finds while both ends stream without pause (bytes
/// queued at the source, in flight in the pipes or the send queues), with small and large
/// writes: nothing lost or doubled, whichever plane ends the flow. (A source whose first
/// queued skb was partly read by splice must not enter the map: the verdict would get the
/// whole skb again.)
#[test]
fn hand_over_while_streaming_loses_nothing() {
    let mut handed_over = 0;
    let mut flows = 0;
    for chunk in [16 << 10, 256 << 10, 4 << 20] {
        for _ in 0..6 {
            let report =
                stream_both_ways(Plane::SockmapHandOver, (32 << 20, chunk), 0, Duration::ZERO);
            handed_over += usize::from(report.spliced_in_kernel);
            flows += 1;
        }
    }
    eprintln!("handed over to the maps: {handed_over} of {flows} flows");
}

/// A request/answer flow shorter than the hand-over time never enters the maps.
#[test]
fn short_flow_stays_on_splice() {
    let mut p = pair();
    let flow = run_flow(
        Plane::SockmapHandOver,
        p.client_fd,
        p.server_fd,
        FlowTimeouts {
            client: Some(Duration::from_secs(10)),
            ..FlowTimeouts::default()
        },
        None,
    );
    p.client.write_all(b"ping").unwrap();
    p.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut p.backend), b"ping");
    p.backend.write_all(b"pong").unwrap();
    p.backend.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut p.client), b"pong");
    let report = flow.join().unwrap();
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(
        !report.spliced_in_kernel,
        "a half-closed flow is not handed over"
    );
}

/// One-way bulk into a receiver slower than the sender, in 1 MiB writes: lb's pipe fills
/// before the source's queue is read to the end, so most reads stop inside an skb. A hand-over
/// at such a point would forward the rest of that skb twice (the verdict gets whole skbs).
#[test]
fn hand_over_into_a_slow_receiver_doubles_nothing() {
    let mut handed_over = 0;
    for _ in 0..4 {
        let p = pair();
        let flow = run_flow(
            Plane::SockmapHandOver,
            p.client_fd,
            p.server_fd,
            FlowTimeouts::default(),
            None,
        );
        let total = 64 << 20;
        let up = stream_with_pause(
            p.client.try_clone().unwrap(),
            (total, 1 << 20),
            5,
            0,
            Duration::ZERO,
        );
        let (mut backend, mut client) = (p.backend, p.client);
        let want = pattern(total, 5);
        let mut got = Vec::with_capacity(total + (1 << 20));
        let mut buf = vec![0u8; 64 << 10];
        let mut reads = 0u32;
        loop {
            let n = backend.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            reads += 1;
            if reads.is_multiple_of(16) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        up.join().unwrap();
        backend.shutdown(Shutdown::Write).unwrap();
        assert!(read_all(&mut client).is_empty());
        assert!(
            got.len() == total && got == want,
            "got {} of {total} bytes, or wrong ones",
            got.len()
        );
        let report = flow.join().unwrap();
        handed_over += usize::from(report.spliced_in_kernel);
    }
    eprintln!("handed over to the maps: {handed_over} of 4 flows");
}

/// The hand-over rule for a pump whose last read stopped partway into an skb: such a pump must
/// not be held for a hand-over, because the verdict program gets whole skbs from the socket's
/// queue and would forward the rest of that skb a second time. Here the backend reads nothing
/// at first, so lb's pipe fills and the pump's read stops where the pipe is full, inside an
/// skb, with more queued behind; the stop is requested while the pump waits to write its pipe
/// out, then the backend reads. The pumps are then handed to the maps where they stopped, as
/// `sockmap::forward` does: every byte must arrive once.
#[test]
fn partly_read_skb_is_not_handed_over() {
    use crate::dataplane::splice::pump;
    use crate::dataplane::Stop;
    use std::os::fd::AsFd;
    use std::pin::pin;
    use std::sync::mpsc;

    const TOTAL: usize = 16 << 20;
    let p = pair();
    let (mut client, mut backend) = (p.client, p.backend);
    let (handed_tx, handed_rx) = mpsc::channel::<()>();
    let writer = {
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            client.write_all(&pattern(TOTAL, 31)).unwrap();
            // Half-closing before the hand-over would keep the flow on splice (trap 5).
            handed_rx.recv().unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    let lb_client = p.client_fd.try_clone().unwrap();
    let (report, reader) = block_on_local(async move {
        let maps = thread_maps(maps_ids(), Duration::ZERO);
        tokio::task::spawn_local(maps.watcher().clone().run());
        let c = crate::dataplane::async_fd(p.client_fd).unwrap();
        let s = crate::dataplane::async_fd(p.server_fd).unwrap();
        let stop = Stop::default();
        let (bytes_in, bytes_out) = (Cell::new(0u64), Cell::new(0u64));
        let last = Cell::new(Instant::now());
        let ends = Ends::default();
        let reader;
        {
            let mut up = pin!(pump(&c, &s, &bytes_in, &last, &ends, true, &stop, true));
            let mut down = pin!(pump(&s, &c, &bytes_out, &last, &ends, false, &stop, true));
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut run_until = async |done: &dyn Fn() -> bool| {
                while !done() {
                    assert!(Instant::now() < deadline, "pumps never stopped");
                    tokio::select! {
                        e = &mut up => panic!("client->server pump ended: {e:?}"),
                        e = &mut down => panic!("server->client pump ended: {e:?}"),
                        () = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
            };
            // 1. The backend reads nothing: lb's pipe fills, its last read stops inside an skb.
            // At least 300 ms, and until bytes wait at lb (a loaded machine may take longer to
            // write them: the suite once found none queued at 300 ms).
            let filled = Instant::now() + Duration::from_millis(300);
            run_until(&|| Instant::now() >= filled && backpressure::inq(lb_client.as_fd()) > 0)
                .await;
            let queued = backpressure::inq(lb_client.as_fd());
            assert!(
                queued > 0 && bytes_in.get() < TOTAL as u64,
                "precondition: bytes still queued at lb ({queued}) and not all passed on"
            );
            // 2. Stop while the pump waits to write its pipe out; then the backend reads.
            stop.request();
            reader = std::thread::spawn(move || {
                let got = read_all(&mut backend);
                drop(backend);
                got
            });
            run_until(&|| stop.quiet()).await;
        }
        // 3. Hand over where the pumps stopped.
        let read = (bytes_in.get(), bytes_out.get());
        let report = hand_to_maps(&maps, (c, s), (last.get(), read), handed_tx).await;
        (report, reader)
    });
    writer.join().unwrap();
    let got = reader.join().unwrap();
    assert!(
        got.len() == TOTAL && got == pattern(TOTAL, 31),
        "the backend got {} bytes of {TOTAL}, or wrong ones (bytes forwarded twice?)",
        got.len()
    );
    assert!(read_all(&mut client).is_empty());
    assert_eq!(report.end, FlowEnd::Closed);
    assert!(
        report.spliced_in_kernel,
        "the flow was handed over to the maps"
    );
}
