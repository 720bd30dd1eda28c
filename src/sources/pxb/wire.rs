//! The JSON that PX-Backup's REST gateway (grpc-gateway v1.16) sends, decoded leniently.
//!
//! What the gateway writes depends on how PX-Backup configures its marshaler, which is not
//! public, so every shape proto3 JSON allows is taken:
//! - field names as in the proto (snake_case) or in lowerCamelCase;
//! - enums as their names or their numbers;
//! - 64-bit integers as numbers or as decimal strings;
//! - messages that the proto embeds with `gogoproto.embed` (`metadata`, `backup_info`, ...)
//!   nested under their own key or flattened into the parent;
//! - absent fields and `null` as the proto's zero values; timestamps as RFC 3339 strings or
//!   as `{seconds, nanos}`.
//!
//! Well-formed JSON of the wrong shape (a string where a number belongs) never fails a page:
//! the value decodes to `Leaf::Bad` with the reason, the object that holds it carries that
//! reason as its `problem`, and the source skips just that object. Only JSON that does not
//! parse fails the page. A status name or number that the enum does not know is not a problem:
//! it decodes to `WireEnum::Unknown` and the mapping exports it as Invalid with a warning.
//!
//! Decoding allocates only the strings that are kept (names, uids, labels); keys are borrowed
//! from the page and fields the exporter does not use are skipped unread.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::model::{
    BackupLocationStatus, BackupStatus, ClusterStatus, NamespaceStatus, RestoreStatus, Timestamp,
};

/// A decoded value, or why the JSON there had the wrong shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Leaf<T> {
    Ok(T),
    Bad(String),
}

/// A value that decodes without ever failing on a well-formed value of the wrong shape.
pub trait WireValue: Sized {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error>;
}

impl<'de, T: WireValue> Deserialize<'de> for Leaf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::decode(d)
    }
}

/// Reads and drops the rest of a sequence or map, so that decoding goes on after a value of
/// the wrong shape.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// An object key, borrowed from the page unless it had escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// A JSON scalar type of the proto. Each hook returns `None` for a value of the wrong shape.
trait Scalar: Sized {
    /// What a value looks like, for the reason of a `Leaf::Bad`.
    const EXPECTED: &'static str;
    /// `null`: the proto's zero value.
    fn null() -> Self;
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(n: i64) -> Option<Self> {
        u64::try_from(n).ok().and_then(Self::from_u64)
    }
    fn from_f64(f: f64) -> Option<Self> {
        // A JavaScript-minded marshaler may write 3 as 3.0; anything else is not an integer.
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Self::from_i64(f as i64)
        } else {
            None
        }
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
}

fn bad<T: Scalar>(found: impl fmt::Display) -> Leaf<T> {
    Leaf::Bad(format!("expected {}, found {found}", T::EXPECTED))
}

fn leaf<T: Scalar>(value: Option<T>, found: impl fmt::Display) -> Leaf<T> {
    match value {
        Some(v) => Leaf::Ok(v),
        None => bad(found),
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = Leaf<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<T>, E> {
        Ok(leaf(T::from_bool(v), v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<T>, E> {
        Ok(leaf(T::from_i64(v), v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<T>, E> {
        Ok(leaf(T::from_u64(v), v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<T>, E> {
        Ok(leaf(T::from_f64(v), v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf<T>, E> {
        Ok(leaf(T::from_str(v), format_args!("{v:?}")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Leaf<T>, E> {
        Ok(Leaf::Ok(T::null()))
    }
    fn visit_none<E: de::Error>(self) -> Result<Leaf<T>, E> {
        Ok(Leaf::Ok(T::null()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<T>, A::Error> {
        drain_seq(seq)?;
        Ok(bad("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<T>, A::Error> {
        drain_map(map)?;
        Ok(bad("an object"))
    }
}

macro_rules! scalar_value {
    ($($t:ty),*) => {$(
        impl WireValue for $t {
            fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
                d.deserialize_any(ScalarVisitor::<$t>(PhantomData))
            }
        }
    )*};
}

impl Scalar for String {
    const EXPECTED: &'static str = "a string";
    fn null() -> Self {
        String::new()
    }
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl Scalar for u64 {
    const EXPECTED: &'static str = "an unsigned integer (a number or a decimal string)";
    fn null() -> Self {
        0
    }
    fn from_str(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n)
    }
}

impl Scalar for i64 {
    const EXPECTED: &'static str = "an integer (a number or a decimal string)";
    fn null() -> Self {
        0
    }
    fn from_str(s: &str) -> Option<Self> {
        s.parse().ok()
    }
    fn from_u64(n: u64) -> Option<Self> {
        i64::try_from(n).ok()
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(n)
    }
}

impl Scalar for bool {
    const EXPECTED: &'static str = "true or false";
    fn null() -> Self {
        false
    }
    fn from_bool(b: bool) -> Option<Self> {
        Some(b)
    }
    fn from_str(s: &str) -> Option<Self> {
        match s {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

scalar_value!(String, u64, i64, bool);

/// A proto enum of the API.
pub trait ProtoEnum: Copy + fmt::Debug + PartialEq + 'static {
    /// What it is, in the warning about an unknown value ("backup status").
    const KIND: &'static str;
    /// Its names, for that warning.
    const EXPECTED: &'static str;
    fn by_name(name: &str) -> Option<Self>;
    fn by_number(n: i64) -> Option<Self>;
    /// Value 0, what an absent field means.
    fn zero() -> Self;
}

/// Implements `ProtoEnum` for an enum with `ALL`, `as_str` and `value` (the model's statuses
/// and the API's own enums below).
macro_rules! proto_enum_impl {
    ($t:ty, $kind:literal, $expected:literal) => {
        impl ProtoEnum for $t {
            const KIND: &'static str = $kind;
            const EXPECTED: &'static str = $expected;
            fn by_name(name: &str) -> Option<Self> {
                <$t>::ALL.iter().copied().find(|e| e.as_str() == name)
            }
            fn by_number(n: i64) -> Option<Self> {
                <$t>::ALL.iter().copied().find(|e| e.value() == n)
            }
            fn zero() -> Self {
                <$t>::ALL[0]
            }
        }
    };
}

proto_enum_impl!(
    BackupStatus,
    "backup status",
    "Invalid Pending InProgress Aborted Failed Deleting Success Captured PartialSuccess DeletePending CloudBackupMissing (or 0-10)"
);
proto_enum_impl!(
    RestoreStatus,
    "restore status",
    "Invalid Pending InProgress Aborted Failed Deleting Success Retained PartialSuccess (or 0-8)"
);
proto_enum_impl!(
    ClusterStatus,
    "cluster status",
    "Invalid Online Offline DeletePending Pending Failed Success (or 0-6)"
);
proto_enum_impl!(
    BackupLocationStatus,
    "backup location status",
    "Invalid Valid DeletePending ValidationInProgress ValidationFailed LimitedAvailability (or 0-5)"
);
proto_enum_impl!(
    NamespaceStatus,
    "namespace status",
    "Invalid InProgress Success Failed PartialSuccess (or 0-4)"
);

/// Declares one of the API's enums that the model keeps as a label string, not as an enum.
macro_rules! api_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $expected:literal { $($variant:ident = $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[allow(non_camel_case_types)] // the proto's own spelling (weeklyIndex: first, last)
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }
            pub fn value(self) -> i64 {
                match self { $($name::$variant => $value),+ }
            }
        }
        proto_enum_impl!($name, $kind, $expected);
    };
}

api_enum!(
    /// `BackupInfo.BackupObjectType.Type`.
    ObjectType, "backup object type", "Invalid All VirtualMachine (or 0-2)" {
        Invalid = 0, All = 1, VirtualMachine = 2,
    }
);

api_enum!(
    /// `BackupLocationInfo.Type`.
    LocationType, "backup location type", "Invalid S3 Azure Google NFS (or 0-4)" {
        Invalid = 0, S3 = 1, Azure = 2, Google = 3, NFS = 4,
    }
);

api_enum!(
    /// `SchedulePolicyInfo.MonthlyPolicy.RelativeMonthlyPolicy.weeklyIndex`.
    WeeklyIndex, "weekly index", "Invalid first second third fourth last (or 0-5)" {
        Invalid = 0, first = 1, second = 2, third = 3, fourth = 4, last = 5,
    }
);

/// An enum value: one the enum knows, or what was sent (a name or a number) when it does not.
#[derive(Clone, Debug, PartialEq)]
pub enum WireEnum<E> {
    Known(E),
    Unknown(String),
}

impl<E: ProtoEnum> Default for WireEnum<E> {
    fn default() -> Self {
        WireEnum::Known(E::zero())
    }
}

impl<E: ProtoEnum> Scalar for WireEnum<E> {
    const EXPECTED: &'static str = "an enum name or number";
    fn null() -> Self {
        WireEnum::Known(E::zero())
    }
    fn from_str(s: &str) -> Option<Self> {
        Some(match E::by_name(s) {
            Some(e) => WireEnum::Known(e),
            None => WireEnum::Unknown(s.to_owned()),
        })
    }
    fn from_u64(n: u64) -> Option<Self> {
        match i64::try_from(n) {
            Ok(n) => Self::from_i64(n),
            Err(_) => Some(WireEnum::Unknown(n.to_string())),
        }
    }
    fn from_i64(n: i64) -> Option<Self> {
        Some(match E::by_number(n) {
            Some(e) => WireEnum::Known(e),
            None => WireEnum::Unknown(n.to_string()),
        })
    }
}

impl<E: ProtoEnum> WireValue for WireEnum<E> {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
        d.deserialize_any(ScalarVisitor::<WireEnum<E>>(PhantomData))
    }
}

/// A `google.protobuf.Timestamp`: RFC 3339 (proto3 JSON) or `{seconds, nanos}` (Go's
/// encoding/json of the gogo type). Go's zero time and anything before 1970 mean "not set".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time(pub Option<Timestamp>);

impl WireValue for Time {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
        struct TimeVisitor;
        const EXPECTED: &str = "an RFC 3339 time or {seconds, nanos}";
        fn bad_time(found: impl fmt::Display) -> Leaf<Time> {
            Leaf::Bad(format!("expected {EXPECTED}, found {found}"))
        }
        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = Leaf<Time>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf<Time>, E> {
                if v.is_empty() || v.starts_with("0001-01-01") {
                    return Ok(Leaf::Ok(Time(None)));
                }
                Ok(match Timestamp::parse_rfc3339(v) {
                    Ok(t) if t.as_millis() > 0 => Leaf::Ok(Time(Some(t))),
                    Ok(_) => Leaf::Ok(Time(None)),
                    Err(_) => bad_time(format_args!("{v:?}")),
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Leaf<Time>, E> {
                Ok(Leaf::Ok(Time(None)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Leaf<Time>, A::Error> {
                let (mut seconds, mut nanos) = (0i64, 0i64);
                let mut problem = None;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let slot = match key.as_str() {
                        "seconds" => &mut seconds,
                        "nanos" => &mut nanos,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    match map.next_value::<Leaf<i64>>()? {
                        Leaf::Ok(v) => *slot = v,
                        Leaf::Bad(why) => note(&mut problem, key.as_str(), why),
                    }
                }
                Ok(match problem {
                    Some(why) => Leaf::Bad(why),
                    None if seconds > 0 => Leaf::Ok(Time(Some(Timestamp(
                        seconds.saturating_mul(1000) + nanos / 1_000_000,
                    )))),
                    None => Leaf::Ok(Time(None)),
                })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<Time>, E> {
                Ok(bad_time(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<Time>, E> {
                Ok(bad_time(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<Time>, E> {
                Ok(bad_time(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<Time>, E> {
                Ok(bad_time(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<Time>, A::Error> {
                drain_seq(seq)?;
                Ok(bad_time("a list"))
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

/// The number of elements of a list whose content the exporter does not need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count(pub u64);

impl WireValue for Count {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Leaf<Count>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaf<Count>, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Leaf::Ok(Count(n)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Ok(Count(0)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<Count>, A::Error> {
                drain_map(map)?;
                Ok(Leaf::Bad("expected a list, found an object".into()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Bad("expected a list, found a string".into()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Bad("expected a list, found a boolean".into()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Bad("expected a list, found a number".into()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Bad("expected a list, found a number".into()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Leaf<Count>, E> {
                Ok(Leaf::Bad("expected a list, found a number".into()))
            }
        }
        d.deserialize_any(CountVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Lists and optional values

/// `null` is None; anything else is the value.
impl<T: WireValue> WireValue for Option<T> {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
        struct OptionVisitor<T>(PhantomData<T>);
        impl<'de, T: WireValue> Visitor<'de> for OptionVisitor<T> {
            type Value = Leaf<Option<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Leaf::Ok(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Leaf::Ok(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Ok(match T::decode(d)? {
                    Leaf::Ok(v) => Leaf::Ok(Some(v)),
                    Leaf::Bad(why) => Leaf::Bad(why),
                })
            }
        }
        d.deserialize_option(OptionVisitor(PhantomData))
    }
}

/// A list whose elements must all decode: the first that does not is the list's problem
/// (the rest is still read, so that decoding goes on).
impl<T: WireValue> WireValue for Vec<T> {
    fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: WireValue> Visitor<'de> for ListVisitor<T> {
            type Value = Leaf<Vec<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                let mut problem = None;
                while let Some(item) = seq.next_element::<Leaf<T>>()? {
                    match item {
                        Leaf::Ok(v) if problem.is_none() => out.push(v),
                        Leaf::Ok(_) => {}
                        Leaf::Bad(why) => {
                            if problem.is_none() {
                                problem = Some(format!("[{}]: {why}", out.len()));
                            }
                        }
                    }
                }
                Ok(match problem {
                    Some(why) => Leaf::Bad(why),
                    None => Leaf::Ok(out),
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Leaf::Ok(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Leaf::Bad("expected a list, found an object".into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Leaf::Bad(format!("expected a list, found {v:?}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Leaf::Bad(format!("expected a list, found {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Leaf::Bad(format!("expected a list, found {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Leaf::Bad(format!("expected a list, found {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Leaf::Bad(format!("expected a list, found {v}")))
            }
        }
        d.deserialize_any(ListVisitor(PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

/// Keeps the first problem of a message, prefixed with the field it is in.
fn note(problem: &mut Option<String>, key: &str, why: String) {
    if problem.is_none() {
        *problem = Some(format!("{key}: {why}"));
    }
}

/// A proto message: a JSON object whose fields are taken by name.
pub trait Message: Default {
    /// Takes the value of `key` when it is a field of this message (or of a message embedded
    /// in it); `false` leaves the value unread.
    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
        problem: &mut Option<String>,
    ) -> Result<bool, A::Error>;
}

struct MessageVisitor<M>(PhantomData<M>);

/// Reads a message's fields; what had the wrong shape is left at its zero value and the first
/// such field is returned as the problem.
fn read_message<'de, M: Message, A: MapAccess<'de>>(
    mut map: A,
) -> Result<(M, Option<String>), A::Error> {
    let mut message = M::default();
    let mut problem = None;
    while let Some(key) = map.next_key::<Key<'de>>()? {
        if !message.take(key.as_str(), &mut map, &mut problem)? {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok((message, problem))
}

impl<'de, M: Message> Visitor<'de> for MessageVisitor<M> {
    type Value = Leaf<M>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<M>, A::Error> {
        Ok(match read_message(map)? {
            (_, Some(why)) => Leaf::Bad(why),
            (message, None) => Leaf::Ok(message),
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Leaf<M>, E> {
        Ok(Leaf::Ok(M::default()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<M>, A::Error> {
        drain_seq(seq)?;
        Ok(Leaf::Bad("expected an object, found a list".into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Leaf<M>, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v:?}")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Leaf<M>, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Leaf<M>, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Leaf<M>, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Leaf<M>, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
}

/// Reads one field's value into `slot`, or notes why it could not.
fn field<'de, A: MapAccess<'de>, T: WireValue>(
    slot: &mut T,
    key: &str,
    map: &mut A,
    problem: &mut Option<String>,
) -> Result<(), A::Error> {
    match map.next_value::<Leaf<T>>()? {
        Leaf::Ok(v) => *slot = v,
        Leaf::Bad(why) => note(problem, key, why),
    }
    Ok(())
}

/// Declares a message: its fields with the JSON names they answer to, and the messages it
/// embeds (`gogoproto.embed`), taken both under their own key and flattened into it.
macro_rules! message {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( @embed $efield:ident : $ety:ty = [$($ekey:literal),+], )*
            $( $field:ident : $ty:ty = [$($key:literal),+], )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name {
            $( pub $efield: $ety, )*
            $( pub $field: $ty, )*
        }

        impl Message for $name {
            fn take<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
                problem: &mut Option<String>,
            ) -> Result<bool, A::Error> {
                match key {
                    $( $($ekey)|+ => field(&mut self.$efield, key, map, problem)?, )*
                    $( $($key)|+ => field(&mut self.$field, key, map, problem)?, )*
                    _ => {
                        $( if self.$efield.take(key, map, problem)? { return Ok(true); } )*
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }

        impl WireValue for $name {
            fn decode<'de, D: Deserializer<'de>>(d: D) -> Result<Leaf<Self>, D::Error> {
                d.deserialize_any(MessageVisitor::<$name>(PhantomData))
            }
        }
    };
}

message! {
    /// `Metadata` (common.proto).
    pub struct Metadata {
        name: String = ["name"],
        uid: String = ["uid"],
        org_id: String = ["org_id", "orgId"],
        create_time: Time = ["create_time", "createTime"],
        create_time_in_sec: i64 = ["create_time_in_sec", "createTimeInSec"],
    }
}

message! {
    /// `ObjectRef`, and `BackupInfo.BackupSchedule` (the same two fields).
    pub struct ObjectRef {
        name: String = ["name"],
        uid: String = ["uid"],
    }
}

message! {
    /// An `ObjectRef` (or `BackupInfo.BackupSchedule`) whose uid the exporter does not use:
    /// the uid is skipped rather than allocated for every backup.
    pub struct NameRef {
        name: String = ["name"],
    }
}

message! {
    /// `BackupInfo.StatusInfo`: the backup status enum, also used by volumes and VMs.
    pub struct BackupStatusInfo {
        status: WireEnum<BackupStatus> = ["status"],
    }
}

message! {
    /// `RestoreInfo.StatusInfo`.
    pub struct RestoreStatusInfo {
        status: WireEnum<RestoreStatus> = ["status"],
    }
}

message! {
    /// `ClusterInfo.StatusInfo`.
    pub struct ClusterStatusInfo {
        status: WireEnum<ClusterStatus> = ["status"],
    }
}

message! {
    /// `BackupLocationInfo.StatusInfo`.
    pub struct LocationStatusInfo {
        status: WireEnum<BackupLocationStatus> = ["status"],
    }
}

message! {
    /// `NamespaceResource.StatusInfo`.
    pub struct NamespaceStatusInfo {
        status: WireEnum<NamespaceStatus> = ["status"],
    }
}

message! {
    /// `BackupInfo.BackupObjectType`.
    pub struct BackupObjectType {
        kind: WireEnum<ObjectType> = ["type"],
    }
}

message! {
    /// `completionTimeInfo`.
    pub struct CompletionTimeInfo {
        total_completion_time: Time = ["total_completion_time", "totalCompletionTime"],
    }
}

message! {
    /// `BackupInfo.Volume`.
    pub struct Volume {
        name: String = ["name"],
        namespace: String = ["namespace"],
        pvc: String = ["pvc"],
        status: Option<BackupStatusInfo> = ["status"],
        driver_name: String = ["driver_name", "driverName"],
        storage_class: String = ["storage_class", "storageClass"],
    }
}

message! {
    /// `BackupInfo.VirtualMachineInfo`.
    pub struct VirtualMachineInfo {
        name: String = ["name"],
        namespace: String = ["namespace"],
        os_name: String = ["os_name", "osName"],
        status: Option<BackupStatusInfo> = ["status"],
    }
}

message! {
    /// `ResourceInfo`.
    pub struct ResourceInfo {
        name: String = ["name"],
        namespace: String = ["namespace"],
        group: String = ["group"],
        kind: String = ["kind"],
        version: String = ["version"],
    }
}

message! {
    /// `VirtualMachineResourceInfo`: a resource (embedded) and the VMs it belongs to.
    pub struct VirtualMachineResourceInfo {
        @embed resource: ResourceInfo = ["resource_info", "resourceInfo"],
        virtual_machine_names: Vec<String> = ["virtual_machine_names", "virtualMachineNames"],
    }
}

message! {
    /// `BackupInfo.VirtualMachineResources`.
    pub struct VirtualMachineResources {
        vms: Vec<VirtualMachineResourceInfo> = ["vms"],
    }
}

message! {
    /// `NamespaceResource.Metrics`.
    pub struct NamespaceMetrics {
        total_resources: u64 = ["total_resources", "totalResources"],
        total_volumes: u64 = ["total_volumes", "totalVolumes"],
        total_failed_resources: u64 = ["total_failed_resources", "totalFailedResources"],
        total_failed_volumes: u64 = ["total_failed_volumes", "totalFailedVolumes"],
    }
}

message! {
    /// `NamespaceResource.ResourceTypeInfo.Metrics`.
    pub struct ResourceTypeMetrics {
        total_resources: u64 = ["total_resources", "totalResources"],
        total_failed_resources: u64 = ["total_failed_resources", "totalFailedResources"],
    }
}

message! {
    /// `NamespaceResource.ResourceTypeInfo` (its chunks, lists of resource names, are skipped).
    pub struct ResourceTypeInfo {
        name: String = ["name"],
        metrics: Option<ResourceTypeMetrics> = ["metrics"],
    }
}

message! {
    /// `NamespaceResource`.
    pub struct NamespaceResource {
        name: String = ["name"],
        status: Option<NamespaceStatusInfo> = ["status"],
        resource_types: Vec<ResourceTypeInfo> = ["resource_types", "resourceTypes"],
        metrics: Option<NamespaceMetrics> = ["metrics"],
    }
}

message! {
    /// `BackupInfo.NamespaceResources`.
    pub struct NamespaceResources {
        namespaces: Vec<NamespaceResource> = ["namespaces"],
    }
}

message! {
    /// The fields of `BackupInfo` the exporter uses.
    pub struct BackupInfo {
        backup_location: String = ["backup_location", "backupLocation"],
        cluster: String = ["cluster"],
        namespaces: Vec<String> = ["namespaces"],
        status: Option<BackupStatusInfo> = ["status"],
        volumes: Vec<Volume> = ["volumes"],
        backup_schedule: Option<NameRef> = ["backup_schedule", "backupSchedule"],
        total_size: Option<u64> = ["total_size", "totalSize"],
        resource_count: Option<u64> = ["resource_count", "resourceCount"],
        backup_location_ref: Option<NameRef> = ["backup_location_ref", "backupLocationRef"],
        cluster_ref: Option<ObjectRef> = ["cluster_ref", "clusterRef"],
        backup_object_type: Option<BackupObjectType> = ["backup_object_type", "backupObjectType"],
        completion_time_info: Option<CompletionTimeInfo> = ["completion_time_info", "completionTimeInfo"],
        virtual_machines: Vec<VirtualMachineInfo> = ["virtual_machines", "virtualMachines"],
        virtual_machine_resources: Vec<VirtualMachineResourceInfo> = ["virtual_machine_resources", "virtualMachineResources"],
        vm_resources: Option<VirtualMachineResources> = ["vm_resources", "vmResources"],
        namespace_resources: Option<NamespaceResources> = ["namespace_resources", "namespaceResources"],
        failed_resource_count: Option<u64> = ["failed_resource_count", "failedResourceCount"],
        failed_vol_count: Option<u64> = ["failed_vol_count", "failedVolCount"],
    }
}

message! {
    /// `BackupObject`: metadata and backup_info, both embedded.
    pub struct BackupObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: BackupInfo = ["backup_info", "backupInfo"],
    }
}

message! {
    /// The fields of `RestoreInfo` the exporter uses.
    pub struct RestoreInfo {
        backup: String = ["backup"],
        cluster: String = ["cluster"],
        status: Option<RestoreStatusInfo> = ["status"],
        volumes: Option<Count> = ["volumes"],
        total_size: Option<u64> = ["total_size", "totalSize"],
        resource_count: Option<u64> = ["resource_count", "resourceCount"],
        backup_ref: Option<NameRef> = ["backup_ref", "backupRef"],
        cluster_ref: Option<ObjectRef> = ["cluster_ref", "clusterRef"],
    }
}

message! {
    /// `RestoreObject`.
    pub struct RestoreObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: RestoreInfo = ["restore_info", "restoreInfo"],
    }
}

message! {
    /// The fields of `BackupScheduleInfo` the exporter uses.
    pub struct BackupScheduleInfo {
        schedule_policy: String = ["schedule_policy", "schedulePolicy"],
        suspend: bool = ["suspend"],
        cluster: String = ["cluster"],
        schedule_policy_ref: Option<ObjectRef> = ["schedule_policy_ref", "schedulePolicyRef"],
        cluster_ref: Option<ObjectRef> = ["cluster_ref", "clusterRef"],
    }
}

message! {
    /// `BackupScheduleObject`.
    pub struct BackupScheduleObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: BackupScheduleInfo = ["backup_schedule_info", "backupScheduleInfo"],
    }
}

message! {
    /// The fields of `ClusterInfo` the exporter uses (never its kubeconfig or tokens: the
    /// source does not ask for secrets, and skips what it does not use unread).
    pub struct ClusterInfo {
        status: Option<ClusterStatusInfo> = ["status"],
    }
}

message! {
    /// `ClusterObject`; its Go type names the embedded info `clusterinfo`.
    pub struct ClusterObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: ClusterInfo = ["clusterInfo", "clusterinfo", "cluster_info"],
    }
}

message! {
    /// The fields of `BackupLocationInfo` the exporter uses.
    pub struct BackupLocationInfo {
        kind: WireEnum<LocationType> = ["type"],
        status: Option<LocationStatusInfo> = ["status"],
    }
}

message! {
    /// `BackupLocationObject` (its info is not embedded in the proto; taken flattened too).
    pub struct BackupLocationObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: BackupLocationInfo = ["backup_location_info", "backupLocationInfo"],
    }
}

message! {
    /// `OrganizationObject`.
    pub struct OrganizationObject {
        @embed metadata: Metadata = ["metadata"],
    }
}

message! {
    /// `SchedulePolicyInfo.IntervalPolicy`.
    pub struct IntervalPolicy {
        minutes: i64 = ["minutes"],
    }
}

message! {
    /// `SchedulePolicyInfo.DailyPolicy`.
    pub struct DailyPolicy {
        time: String = ["time"],
    }
}

message! {
    /// `SchedulePolicyInfo.WeeklyPolicy`.
    pub struct WeeklyPolicy {
        day: String = ["day"],
        bi_weekly: bool = ["bi_weekly", "biWeekly"],
    }
}

message! {
    /// `SchedulePolicyInfo.MonthlyPolicy.SelectiveMonthlyPolicy`.
    pub struct SelectiveMonthlyPolicy {
        date: i64 = ["date"],
        months: String = ["months"],
    }
}

message! {
    /// `SchedulePolicyInfo.MonthlyPolicy.RelativeMonthlyPolicy`.
    pub struct RelativeMonthlyPolicy {
        day: String = ["day"],
        weekly_index: WireEnum<WeeklyIndex> = ["weekly_index", "weeklyIndex"],
    }
}

message! {
    /// `SchedulePolicyInfo.MonthlyPolicy`.
    pub struct MonthlyPolicy {
        date: i64 = ["date"],
        selective: Option<SelectiveMonthlyPolicy> = ["selective_monthly_policy", "selectiveMonthlyPolicy"],
        relative: Option<RelativeMonthlyPolicy> = ["relative_monthly_policy", "relativeMonthlyPolicy"],
    }
}

message! {
    /// The parts of `SchedulePolicyInfo` that say when it runs.
    pub struct SchedulePolicyInfo {
        interval: Option<IntervalPolicy> = ["interval"],
        daily: Option<DailyPolicy> = ["daily"],
        weekly: Option<WeeklyPolicy> = ["weekly"],
        monthly: Option<MonthlyPolicy> = ["monthly"],
    }
}

message! {
    /// `SchedulePolicyObject`.
    pub struct SchedulePolicyObject {
        @embed metadata: Metadata = ["metadata"],
        @embed info: SchedulePolicyInfo = ["schedule_policy_info", "schedulePolicyInfo"],
    }
}

// ---------------------------------------------------------------------------------------------
// Pages

/// An object that answers list in a page under one of `KEYS`.
pub trait Listed: Message {
    const KEYS: &'static [&'static str];
    fn metadata(&self) -> &Metadata;
}

impl Listed for BackupObject {
    const KEYS: &'static [&'static str] = &["backups"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for RestoreObject {
    const KEYS: &'static [&'static str] = &["restores"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for BackupScheduleObject {
    const KEYS: &'static [&'static str] = &["backup_schedules", "backupSchedules"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for ClusterObject {
    const KEYS: &'static [&'static str] = &["clusters"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for BackupLocationObject {
    const KEYS: &'static [&'static str] = &["backup_locations", "backupLocations"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for OrganizationObject {
    const KEYS: &'static [&'static str] = &["organizations"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}
impl Listed for SchedulePolicyObject {
    const KEYS: &'static [&'static str] = &["schedule_policies", "schedulePolicies"];
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// One object of a page, and the first of its fields that had the wrong shape (that field is
/// left at its zero value). An element that is not an object at all is a default object with
/// a problem. The object keeps what did decode, its uid and name above all, so that the source
/// can name it and keep its last good state.
#[derive(Debug)]
pub struct Item<T> {
    pub object: T,
    pub problem: Option<String>,
}

/// One answer of an enumeration: its objects (each decoded on its own, so that one of the
/// wrong shape is skipped without losing the others), `total_count` and `complete`.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<Item<T>>,
    /// Absent when the server does not say (older PX-Backup, or a zero left out).
    pub total_count: Option<u64>,
    /// Absent when the server does not say: PX-Backup before 3.0 never does for the kinds it
    /// answers in one piece, and grpc-gateway leaves a `false` out.
    pub complete: Option<bool>,
}

/// Why a page could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PageError(String);

/// Decodes one answer. Malformed JSON, or a `total_count` / `complete` of the wrong shape,
/// fails the whole page: nothing in it can be trusted to be the whole list.
pub fn decode_page<T: Listed>(body: &[u8]) -> Result<Page<T>, PageError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let page = PageSeed::<T>(PhantomData)
        .deserialize(&mut de)
        .and_then(|p| de.end().map(|()| p))
        .map_err(|e| PageError(e.to_string()))?;
    Ok(page)
}

struct PageSeed<T>(PhantomData<T>);

impl<'de, T: Listed> DeserializeSeed<'de> for PageSeed<T> {
    type Value = Page<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Page<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Listed> Visitor<'de> for PageSeed<T> {
    type Value = Page<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with {:?}", T::KEYS)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page<T>, A::Error> {
        let mut page = Page {
            items: Vec::new(),
            total_count: None,
            complete: None,
        };
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            if T::KEYS.contains(&key) {
                page.items = map.next_value::<Items<T>>()?.0;
            } else if key == "total_count" || key == "totalCount" {
                match map.next_value::<Leaf<u64>>()? {
                    Leaf::Ok(n) => page.total_count = Some(n),
                    Leaf::Bad(why) => return Err(de::Error::custom(format!("{key}: {why}"))),
                }
            } else if key == "complete" {
                match map.next_value::<Leaf<bool>>()? {
                    Leaf::Ok(b) => page.complete = Some(b),
                    Leaf::Bad(why) => return Err(de::Error::custom(format!("{key}: {why}"))),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(page)
    }
}

/// The list of objects of a page; `null` is none.
struct Items<T>(Vec<Item<T>>);

impl<'de, T: Message> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<T>(PhantomData<T>);
        impl<'de, T: Message> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(100_000));
                while let Some(item) = seq.next_element::<Item<T>>()? {
                    out.push(item);
                }
                Ok(Items(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Items<T>, E> {
                Ok(Items(Vec::new()))
            }
        }
        d.deserialize_any(ItemsVisitor(PhantomData))
    }
}

impl<'de, T: Message> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Anything but an object is drained, and the reason kept.
        match d.deserialize_any(Either::<T>(PhantomData))? {
            Leaf::Ok(item) => Ok(item),
            Leaf::Bad(why) => Ok(Item {
                object: T::default(),
                problem: Some(why),
            }),
        }
    }
}

/// An element of a page: an object read by `read_message`, or the reason it is not one.
struct Either<T>(PhantomData<T>);

impl<'de, T: Message> Visitor<'de> for Either<T> {
    type Value = Leaf<Item<T>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let (object, problem) = read_message(map)?;
        Ok(Leaf::Ok(Item { object, problem }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Leaf::Bad("expected an object, found null".into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Leaf::Bad("expected an object, found a list".into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v:?}")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Leaf::Bad(format!("expected an object, found {v}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<T: Listed>(json: &str) -> Page<T> {
        decode_page(json.as_bytes()).expect("a page")
    }

    fn one<T: Listed + fmt::Debug>(json: &str) -> Leaf<T> {
        let mut p = page::<T>(json);
        assert_eq!(p.items.len(), 1, "{p:?}");
        let item = p.items.remove(0);
        match item.problem {
            None => Leaf::Ok(item.object),
            Some(why) => Leaf::Bad(why),
        }
    }

    fn ok<T: fmt::Debug>(l: Leaf<T>) -> T {
        match l {
            Leaf::Ok(v) => v,
            Leaf::Bad(why) => panic!("bad: {why}"),
        }
    }

    #[test]
    fn nested_and_flattened_embeds_decode_alike() {
        let nested = r#"{"backups":[{"metadata":{"name":"b1","uid":"u1","org_id":"default",
            "create_time":"2026-11-23T01:00:00Z"},"backup_info":{"cluster":"c1",
            "status":{"status":"Success","reason":""},"total_size":"1073741824"}}],
            "total_count":"1","complete":true}"#;
        let flat = r#"{"backups":[{"name":"b1","uid":"u1","orgId":"default",
            "createTime":"2026-11-23T01:00:00Z","cluster":"c1","status":{"status":6},
            "totalSize":1073741824}],"total_count":1,"complete":true}"#;
        let a: BackupObject = ok(one(nested));
        let b: BackupObject = ok(one(flat));
        assert_eq!(a, b);
        assert_eq!(a.metadata.uid, "u1");
        assert_eq!(a.info.total_size, Some(1 << 30));
        assert_eq!(
            a.info.status.unwrap().status,
            WireEnum::Known(BackupStatus::Success)
        );
        let p = page::<BackupObject>(nested);
        assert_eq!((p.total_count, p.complete), (Some(1), Some(true)));
    }

    #[test]
    fn absent_and_null_are_zero_values() {
        let b: BackupObject = ok(one(
            r#"{"backups":[{"metadata":{"uid":"u"},"backup_info":{"status":null,"volumes":null,"total_size":null}}]}"#,
        ));
        assert_eq!(b.info.status, None);
        assert!(b.info.volumes.is_empty());
        assert_eq!(b.info.total_size, None);
        let p = page::<BackupObject>(r#"{}"#);
        assert!(p.items.is_empty() && p.complete.is_none() && p.total_count.is_none());
        let p = page::<BackupObject>(r#"{"backups":[],"complete":false}"#);
        assert_eq!((p.complete, p.total_count), (Some(false), None));
        let s: BackupStatusInfo = ok(BackupStatusInfo::decode(
            &mut serde_json::Deserializer::from_str(r#"{"reason":"x"}"#),
        )
        .unwrap());
        assert_eq!(s.status, WireEnum::Known(BackupStatus::Invalid));
    }

    #[test]
    fn enums_by_name_or_number_and_unknown_values_kept() {
        for (json, want) in [
            (
                "\"PartialSuccess\"",
                WireEnum::Known(BackupStatus::PartialSuccess),
            ),
            ("8", WireEnum::Known(BackupStatus::PartialSuccess)),
            ("\"8\"", WireEnum::Unknown("8".into())),
            ("\"Exploded\"", WireEnum::Unknown("Exploded".into())),
            ("42", WireEnum::Unknown("42".into())),
            ("null", WireEnum::Known(BackupStatus::Invalid)),
        ] {
            let got =
                WireEnum::<BackupStatus>::decode(&mut serde_json::Deserializer::from_str(json))
                    .unwrap();
            assert_eq!(got, Leaf::Ok(want), "{json}");
        }
        let got =
            WireEnum::<BackupStatus>::decode(&mut serde_json::Deserializer::from_str("{\"a\":1}"))
                .unwrap();
        assert!(matches!(got, Leaf::Bad(_)), "{got:?}");
    }

    #[test]
    fn wrong_shapes_make_the_object_bad_not_the_page() {
        let p = page::<BackupObject>(
            r#"{"backups":[
                {"metadata":{"uid":"u1","name":"fine"}},
                {"metadata":{"uid":"u2","name":"bad-size"},"backup_info":{"total_size":"lots"}},
                {"metadata":{"uid":"u3","name":"bad-volume"},"backup_info":{"volumes":[{"name":"v"},{"status":[1]}]}},
                "not an object",
                {"metadata":{"uid":"u5","name":"also-fine"}}
            ],"complete":true}"#,
        );
        let bad: Vec<(&str, &str)> = p
            .items
            .iter()
            .filter_map(|i| {
                let why = i.problem.as_deref()?;
                Some((i.object.metadata.uid.as_str(), why))
            })
            .collect();
        assert_eq!(p.items.len(), 5);
        assert_eq!(bad.len(), 3, "{bad:?}");
        // A bad object keeps what did decode: its uid, for the log and to keep its last state.
        assert_eq!(bad[0].0, "u2");
        assert!(
            bad[0].1.contains("total_size") && bad[0].1.contains("\"lots\""),
            "{bad:?}"
        );
        assert_eq!(bad[1].0, "u3");
        assert!(bad[1].1.contains("volumes: [1]: status"), "{bad:?}");
        assert_eq!(bad[2].0, "");
        assert!(bad[2].1.contains("expected an object"), "{bad:?}");
    }

    #[test]
    fn malformed_json_fails_the_page() {
        assert!(decode_page::<BackupObject>(br#"{"backups":[{"metadata":"#).is_err());
        assert!(decode_page::<BackupObject>(br#"[]"#).is_err());
        assert!(decode_page::<BackupObject>(br#"{"complete":"maybe"}"#).is_err());
        assert!(decode_page::<BackupObject>(br#"{} {}"#).is_err());
    }

    #[test]
    fn times_as_strings_or_seconds() {
        let t =
            |json: &str| ok(Time::decode(&mut serde_json::Deserializer::from_str(json)).unwrap()).0;
        let want = Some(Timestamp::from_secs(1_795_395_600));
        assert_eq!(t("\"2026-11-23T01:00:00Z\""), want);
        assert_eq!(
            t("\"2026-11-23T01:00:00.250Z\""),
            Some(Timestamp(1_795_395_600_250))
        );
        assert_eq!(t(r#"{"seconds":"1795395600","nanos":0}"#), want);
        assert_eq!(t(r#"{"seconds":1795395600}"#), want);
        assert_eq!(t("\"0001-01-01T00:00:00Z\""), None);
        assert_eq!(t("null"), None);
        assert!(matches!(
            Time::decode(&mut serde_json::Deserializer::from_str("\"yesterday\"")).unwrap(),
            Leaf::Bad(_)
        ));
    }

    #[test]
    fn sixty_four_bit_values_as_strings_or_numbers() {
        let n = |json: &str| u64::decode(&mut serde_json::Deserializer::from_str(json)).unwrap();
        assert_eq!(n("\"18446744073709551615\""), Leaf::Ok(u64::MAX));
        assert_eq!(n("18446744073709551615"), Leaf::Ok(u64::MAX));
        assert_eq!(n("3.0"), Leaf::Ok(3));
        assert!(matches!(n("-1"), Leaf::Bad(_)));
        assert!(matches!(n("\"12 GB\""), Leaf::Bad(_)));
    }

    #[test]
    fn vm_resources_take_their_resource_nested_or_flattened() {
        let b: BackupObject = ok(one(r#"{"backups":[{"metadata":{"uid":"u"},"backup_info":{
                "virtual_machine_resources":[{"resource_info":{"name":"vm-disk","namespace":"vms","kind":"PersistentVolumeClaim","version":"v1"},"virtual_machine_names":["vm1"]}],
                "vm_resources":{"vms":[{"name":"vm1","namespace":"vms","group":"kubevirt.io","kind":"VirtualMachine","version":"v1","virtual_machine_names":["vm1"]}]}
            }}]}"#));
        let legacy = &b.info.virtual_machine_resources[0];
        assert_eq!(legacy.resource.kind, "PersistentVolumeClaim");
        let new = &b.info.vm_resources.as_ref().unwrap().vms[0];
        assert_eq!(new.resource.group, "kubevirt.io");
        assert_eq!(new.virtual_machine_names, vec!["vm1"]);
    }

    #[test]
    fn cluster_info_under_any_of_its_names() {
        for key in ["clusterInfo", "clusterinfo", "cluster_info"] {
            let c: ClusterObject = ok(one(&format!(
                r#"{{"clusters":[{{"metadata":{{"uid":"c"}},"{key}":{{"status":{{"status":"Online"}},"kubeconfig":"secret"}}}}]}}"#
            )));
            assert_eq!(
                c.info.status.unwrap().status,
                WireEnum::Known(ClusterStatus::Online),
                "{key}"
            );
        }
    }
}
