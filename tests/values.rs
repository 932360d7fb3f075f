//! Typed messages (feature `serde`): round trips over every transport, and
//! hostile bytes decoded as values.
#![cfg(feature = "serde")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use converse::{Config, Conversation, Error, TcpListener, UdpListener};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Order {
    id: u64,
    item: String,
    quantity: i32,
    tags: Vec<String>,
    note: Option<String>,
    prices: BTreeMap<String, f64>,
    kind: Kind,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Kind {
    Buy,
    Sell { limit: u32 },
    Cancel(u64),
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item №{id}"),
        quantity: -(id as i32),
        tags: vec!["a".into(), "bé".into()],
        note: (id % 2 == 0).then(|| "even".to_owned()),
        prices: [("eur".to_owned(), 1.5), ("usd".to_owned(), id as f64)].into(),
        kind: match id % 3 {
            0 => Kind::Buy,
            1 => Kind::Sell { limit: id as u32 },
            _ => Kind::Cancel(id),
        },
    }
}

fn round_trip(mut a: Conversation, mut b: Conversation) {
    for id in 0..50 {
        a.send_value(&order(id)).unwrap();
        assert_eq!(b.recv_value::<Order>().unwrap(), Some(order(id)));
        b.send_value(&(id, "ack")).unwrap();
        assert_eq!(
            a.recv_value::<(u64, String)>().unwrap(),
            Some((id, "ack".to_owned()))
        );
    }
}

#[test]
fn values_round_trip_over_every_transport() {
    let config = config();
    let (a, b) = memory_pair(&config);
    round_trip(a.boxed(), b.boxed());

    let l = TcpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let a = converse::connect_with(&l.local_addr().unwrap().to_string(), &config).unwrap();
    round_trip(a, Conversation::new(l.accept().unwrap()).boxed());

    let l = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let mut a = converse::connect_with(&l.local_addr().unwrap().to_string(), &config).unwrap();
    a.send_value(&0u8).unwrap();
    let mut b = Conversation::new(l.accept().unwrap()).boxed();
    assert_eq!(b.recv_value::<u8>().unwrap(), Some(0));
    round_trip(a, b);

    #[cfg(unix)]
    {
        let (a, b) = converse::Unix::pair_with(&config).unwrap();
        round_trip(Conversation::new(a).boxed(), Conversation::new(b).boxed());
    }
}

#[test]
fn the_format_is_compact() {
    let (mut a, mut b) = memory_pair(&config());
    a.send_value(&(1u32, 300u64, -2i64, true)).unwrap();
    // Varints: 1, 300 (2 bytes), zigzag(-2) = 3, true.
    assert_eq!(&b.recv().unwrap().unwrap()[..], &[1, 0xac, 0x02, 3, 1]);
}

#[test]
fn a_message_that_is_not_the_type_is_kept_and_the_conversation_goes_on() {
    let (mut a, mut b) = memory_pair(&config());
    a.send([0xff, 0xff]).unwrap(); // not a valid Kind discriminant
    a.send_value(&Kind::Buy).unwrap();
    match b.recv_value::<Kind>() {
        Err(Error::InvalidValue { message, reason }) => {
            assert_eq!(&message[..], &[0xff, 0xff]);
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv_value::<Kind>().unwrap(), Some(Kind::Buy));
}

#[test]
fn bytes_left_over_after_a_value_are_refused() {
    let (mut a, mut b) = memory_pair(&config());
    a.send([7, 0]).unwrap(); // a u8, then a stray byte
    match b.recv_value::<u8>() {
        Err(Error::InvalidValue { reason, .. }) => {
            assert!(reason.contains("left over"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_declared_length_is_not_reserved_up_front() {
    let (mut a, mut b) = memory_pair(&config());
    // A Vec<u64> claiming u64::MAX / 2 elements, then three bytes.
    let mut hostile = vec![0xff; 9];
    hostile.push(0x7f);
    hostile.extend_from_slice(&[1, 2, 3]);
    a.send(&hostile).unwrap();
    assert!(matches!(
        b.recv_value::<Vec<u64>>(),
        Err(Error::InvalidValue { .. })
    ));
    // The same for a string and a map.
    a.send(&hostile).unwrap();
    assert!(matches!(
        b.recv_value::<String>(),
        Err(Error::InvalidValue { .. })
    ));
    a.send(&hostile).unwrap();
    assert!(matches!(
        b.recv_value::<BTreeMap<u64, u64>>(),
        Err(Error::InvalidValue { .. })
    ));
}

/// A value whose `Serialize` fails.
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[test]
fn an_unencodable_value_sends_nothing() {
    let (mut a, mut b) = memory_pair(&config().with_read_timeout(Some(Duration::from_millis(50))));
    match a.send_value(&Unencodable) {
        // (postcard does not keep the custom message, only its kind.)
        Err(Error::Encode { reason }) => assert!(reason.contains("Serializ"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(b.recv(), Err(Error::Timeout)), "nothing was sent");
}

#[test]
fn a_value_over_the_limit_is_refused_before_sending() {
    let config = Config::new().with_max_message_len(16);
    let (mut a, _b) = memory_pair(&config);
    match a.send_value(&"x".repeat(100)) {
        Err(Error::MessageTooLarge { len, max }) => assert_eq!((len, max), (101, 16)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn halves_and_the_end() {
    let (a, b) = memory_pair(&config());
    let (mut tx, _rx) = a.boxed().split();
    let (_tx2, mut rx) = b.boxed().split();
    tx.send_value(&order(7)).unwrap();
    assert_eq!(rx.recv_value::<Order>().unwrap(), Some(order(7)));
    tx.close().unwrap();
    assert_eq!(rx.recv_value::<Order>().unwrap(), None, "the clean end");
}

proptest! {
    /// Any bytes decoded as any of these types: a value or `InvalidValue`
    /// carrying the bytes, never a panic; the conversation goes on.
    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut a, mut b) = memory_pair(&config());
        for _ in 0..4 {
            a.send(&bytes).unwrap();
        }
        let check = |r: converse::Result<()>| -> Result<(), TestCaseError> {
            match r {
                Ok(()) => Ok(()),
                Err(Error::InvalidValue { message, .. }) => {
                    prop_assert_eq!(&message[..], &bytes[..]);
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(format!("{e:?}"))),
            }
        };
        check(b.recv_value::<Order>().map(|v| assert!(v.is_some())))?;
        check(b.recv_value::<Vec<String>>().map(|v| assert!(v.is_some())))?;
        check(b.recv_value::<(u8, i64, Option<Kind>)>().map(|v| assert!(v.is_some())))?;
        check(b.recv_value::<BTreeMap<String, Vec<u8>>>().map(|v| assert!(v.is_some())))?;
        a.send_value(&order(1)).unwrap();
        prop_assert_eq!(b.recv_value::<Order>().unwrap(), Some(order(1)));
    }

    /// Every value round-trips.
    #[test]
    fn every_value_round_trips(
        id in any::<u64>(),
        item in ".{0,40}",
        quantity in any::<i32>(),
        tags in proptest::collection::vec(".{0,8}", 0..5),
        note in proptest::option::of(".{0,10}"),
        limit in any::<u32>(),
    ) {
        let value = Order {
            id,
            item,
            quantity,
            tags,
            note,
            prices: [("p".to_owned(), f64::from(quantity))].into(),
            kind: Kind::Sell { limit },
        };
        let (mut a, mut b) = memory_pair(&config());
        a.send_value(&value).unwrap();
        prop_assert_eq!(b.recv_value::<Order>().unwrap(), Some(value));
    }
}
