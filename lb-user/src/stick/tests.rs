use super::*;

fn def(size: u64, expire: Option<u64>, store: &[(DataType, u64)]) -> TableDef {
    TableDef {
        name: "t".into(),
        key: KeyType::Ip,
        key_len: 32,
        size,
        expire,
        store: store.to_vec(),
        peers: None,
        nopurge: false,
        arrays: def::Arrays::default(),
    }
}

fn ip(s: &str) -> Key {
    Key::parse(s, KeyType::Ip, 0).unwrap()
}

#[test]
fn keys_follow_the_table_type() {
    let v4 = Value::Addr("10.0.0.1".parse().unwrap());
    let mapped = Value::Addr("::ffff:10.0.0.1".parse().unwrap());
    assert_eq!(
        Key::from_value(v4.clone(), KeyType::Ip, 0),
        Some(ip("10.0.0.1"))
    );
    assert_eq!(
        Key::from_value(mapped, KeyType::Ip, 0),
        Some(ip("10.0.0.1"))
    );
    assert_eq!(
        Key::from_value(Value::Addr("::1".parse().unwrap()), KeyType::Ip, 0),
        None
    );
    let k6 = Key::from_value(v4, KeyType::Ipv6, 0).unwrap();
    assert_eq!(k6.display(KeyType::Ipv6), "::ffff:10.0.0.1");
    let s = Key::from_value(Value::str("a b=c\x01long"), KeyType::String, 7).unwrap();
    assert_eq!(s.display(KeyType::String), "a\\ b\\=c\\x01l");
    let b = Key::from_value(Value::Bin(vec![0xab, 1]), KeyType::Binary, 4).unwrap();
    assert_eq!(b.display(KeyType::Binary), "AB010000");
    let i = Key::from_value(Value::Int(-1), KeyType::Integer, 0).unwrap();
    assert_eq!(i.display(KeyType::Integer), "4294967295");
    assert_eq!(Key::parse("AB01", KeyType::Binary, 4), Some(b));
}

#[test]
fn full_tables_evict_the_least_recent_unused_entry() {
    let t = Arc::new(Table::new(def(2, None, &[(DataType::ConnCnt, 0)])));
    let a = Tracked::start(&t, &ip("1.0.0.1"), 10).unwrap();
    t.get(&ip("1.0.0.2"), 11).unwrap();
    // Full: 1.0.0.2 goes (1.0.0.1 is tracked, though older).
    t.get(&ip("1.0.0.3"), 12).unwrap();
    assert_eq!(t.used(), 2);
    assert!(t.lookup(&ip("1.0.0.2"), 12).is_none());
    assert!(t.lookup(&ip("1.0.0.1"), 12).is_some());
    // Both tracked: no room.
    let _c = Tracked::start(&t, &ip("1.0.0.3"), 13).unwrap();
    assert!(t.get(&ip("1.0.0.4"), 14).is_none());
    drop(a);
    assert!(t.get(&ip("1.0.0.4"), 15).is_some());
    assert!(t.lookup(&ip("1.0.0.1"), 15).is_none());
}

#[test]
fn entries_expire_after_their_last_touch_unless_tracked() {
    let t = Arc::new(Table::new(def(10, Some(1000), &[(DataType::ConnCur, 0)])));
    let held = Tracked::start(&t, &ip("1.0.0.1"), 0).unwrap();
    t.get(&ip("1.0.0.2"), 0).unwrap();
    assert_eq!(t.dump(None, &[], 5000).lines().count(), 1, "tracked stays");
    assert_eq!(t.used(), 1);
    drop(held);
    let e = t.lookup(&ip("1.0.0.1"), clock()).unwrap();
    assert_eq!(t.read(&e, DataType::ConnCur, 0), Some(0));
}

#[test]
fn tracking_counts_connections_and_dumps_as_haproxy() {
    let t = Arc::new(Table::new(def(
        100,
        Some(60_000),
        &[
            (DataType::ConnCnt, 0),
            (DataType::ConnRate, 10_000),
            (DataType::ConnCur, 0),
        ],
    )));
    let a = Tracked::start(&t, &ip("127.0.0.1"), 1000).unwrap();
    let b = Tracked::start(&t, &ip("127.0.0.1"), 1000).unwrap();
    let line = t.dump(None, &[], 1500);
    let rest = line.split_once(": ").unwrap().1;
    assert!(line.starts_with("0x"), "{line}");
    assert_eq!(
        rest,
        "key=127.0.0.1 use=2 exp=59500 conn_cnt=2 conn_rate(10000)=2 conn_cur=2\n"
    );
    assert_eq!(t.head(), "# table: t, type: ip, size:100, used:1\n");
    let gt = Filter {
        dt: DataType::ConnCur,
        op: Op::Gt,
        value: 1,
    };
    assert_eq!(t.dump(None, &[gt], 1500).lines().count(), 1);
    drop((a, b));
    assert_eq!(t.dump(None, &[gt], 1500), "");
    assert_eq!(t.clear(Some(&ip("127.0.0.1")), &[], 1500), 1);
    assert_eq!(t.used(), 0);
}

#[test]
fn counters_answer_as_the_fetches() {
    let t = Arc::new(Table::new(def(
        10,
        None,
        &[(DataType::Gpc0, 0), (DataType::BytesOutCnt, 0)],
    )));
    let e = t.get(&ip("1.1.1.1"), 0).unwrap();
    assert_eq!(counter(&t, Some(&e), "inc_gpc0", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, Some(&e), "get_gpc0", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, None, "get_gpc0", 0, 0), Some(Value::Int(0)));
    assert_eq!(counter(&t, Some(&e), "conn_rate", 0, 0), None, "not stored");
    t.add(&e, DataType::BytesOutCnt, 5000, 0);
    assert_eq!(
        counter(&t, Some(&e), "kbytes_out", 0, 0),
        Some(Value::Int(4))
    );
    assert_eq!(counter(&t, Some(&e), "clr_gpc0", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, Some(&e), "get_gpc0", 0, 0), Some(Value::Int(0)));
}

fn arrays_def() -> TableDef {
    let mut d = def(
        10,
        None,
        &[
            (DataType::Gpt, 0),
            (DataType::Gpc, 0),
            (DataType::GpcRate, 10_000),
        ],
    );
    d.arrays = def::Arrays {
        gpt: 1,
        gpc: 2,
        gpc_rate: 2,
    };
    d
}

/// `store gpt(1),gpc(2),gpc_rate(2,10s)`: each element counted on its own, `show table`
/// prints them as HAProxy's `table_dump_entry_to_buffer` (`gpc1=`, `gpc0_rate(10000)=`).
#[test]
fn arrays_count_per_element_and_dump_as_haproxy() {
    let t = Arc::new(Table::new(arrays_def()));
    let e = t.get(&ip("1.1.1.1"), 0).unwrap();
    for _ in 0..3 {
        counter(&t, Some(&e), "inc_gpc", 1, 0);
    }
    assert_eq!(counter(&t, Some(&e), "inc_gpc", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, Some(&e), "get_gpc", 1, 0), Some(Value::Int(3)));
    assert_eq!(counter(&t, Some(&e), "gpc_rate", 1, 0), Some(Value::Int(3)));
    // Out of the array: no sample, as HAProxy's `stktable_data_ptr_idx` giving NULL.
    assert_eq!(counter(&t, Some(&e), "get_gpc", 2, 0), None);
    assert_eq!(counter(&t, Some(&e), "inc_gpc", 7, 0), None);
    set_gpt(&t, &e, DataType::Gpt, 0, -1);
    assert_eq!(
        counter(&t, Some(&e), "get_gpt", 0, 0),
        Some(Value::Int(4_294_967_295))
    );
    let line = t.dump(None, &[], 0);
    let fields: Vec<&str> = line.trim_end().split(' ').skip(4).collect();
    assert_eq!(
        fields,
        [
            "gpt0=4294967295",
            "gpc0=1",
            "gpc1=3",
            "gpc0_rate(10000)=1",
            "gpc1_rate(10000)=3"
        ],
        "{line}"
    );
    assert_eq!(counter(&t, Some(&e), "clr_gpc", 1, 0), Some(Value::Int(3)));
    assert_eq!(counter(&t, Some(&e), "get_gpc", 1, 0), Some(Value::Int(0)));
    // `data.gpc` filters on element 0, as HAProxy's `stktable_data_ptr`.
    let f = Filter {
        dt: DataType::Gpc,
        op: Op::Eq,
        value: 1,
    };
    assert_eq!(t.dump(None, &[f], 0).lines().count(), 1);
}

/// A table that stores the arrays answers the old names from elements 0 and 1 (HAProxy 2.6's
/// fallback): `sc-inc-gpc0` moves `gpc[0]` and `gpc_rate[0]`, `gpt0` is `gpt[0]`.
#[test]
fn gpc0_gpc1_gpt0_fall_back_on_the_arrays() {
    let t = Arc::new(Table::new(arrays_def()));
    let e = t.get(&ip("1.1.1.1"), 0).unwrap();
    assert_eq!(counter(&t, Some(&e), "inc_gpc0", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, Some(&e), "inc_gpc1", 0, 0), Some(Value::Int(1)));
    assert_eq!(counter(&t, Some(&e), "inc_gpc1", 0, 0), Some(Value::Int(2)));
    assert_eq!(counter(&t, Some(&e), "get_gpc", 1, 0), Some(Value::Int(2)));
    assert_eq!(
        counter(&t, Some(&e), "gpc1_rate", 0, 0),
        Some(Value::Int(2))
    );
    set_gpt(&t, &e, DataType::Gpt0, 0, 5);
    assert_eq!(counter(&t, Some(&e), "get_gpt", 0, 0), Some(Value::Int(5)));
    // A scalar table has no array: `get_gpc(0)` reads nothing even though `gpc0` is stored.
    let scalar = Table::new(def(10, None, &[(DataType::Gpc0, 0)]));
    let e = scalar.get(&ip("1.1.1.1"), 0).unwrap();
    assert_eq!(counter(&scalar, Some(&e), "get_gpc", 0, 0), None);
    // Only the rate stored: the increment returns the rate's current count (HAProxy's
    // `curr_ctr`).
    let mut d = def(10, None, &[(DataType::GpcRate, 1000)]);
    d.arrays.gpc_rate = 1;
    let rate = Table::new(d);
    let e = rate.get(&ip("1.1.1.1"), 0).unwrap();
    counter(&rate, Some(&e), "inc_gpc", 0, 500);
    assert_eq!(
        counter(&rate, Some(&e), "inc_gpc", 0, 600),
        Some(Value::Int(2))
    );
}
