//! The tolerant intermediate representation: what a message says, read
//! without judging it (the rules are checked in `parse`).
//!
//! The parser runs serde straight over the bytes with a hand-written visitor:
//! the envelope members (`jsonrpc`, `method`, string `id`s) are borrowed from
//! the input when they have no escapes, members other than the six JSON-RPC
//! ones are skipped without being materialized, and only `params`, `result`
//! and `error` become [`Value`]s. serde_json's recursion limit (128) bounds
//! nesting, so hostile input cannot overflow the stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::Id;

/// A JSON value of which only strings and numbers are kept.
#[derive(Debug)]
pub(super) enum Loose<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float,
    Bool,
    Null,
    Array,
    Object,
}

impl Loose<'_> {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Loose::Str(_) => "a string",
            Loose::Int(_) | Loose::UInt(_) => "an integer",
            Loose::Float => "a non-integer number",
            Loose::Bool => "a boolean",
            Loose::Null => "null",
            Loose::Array => "an array",
            Loose::Object => "an object",
        }
    }

    pub(super) fn into_id(self) -> Result<Id, String> {
        match self {
            Loose::Str(s) => Ok(Id::String(s.into_owned())),
            Loose::Int(n) => Ok(Id::Number(n)),
            Loose::UInt(n) => i64::try_from(n).map(Id::Number).map_err(|_| {
                format!("`id` {n} is too large: integer ids must fit in a signed 64-bit integer")
            }),
            Loose::Null => Ok(Id::Null),
            other => Err(format!(
                "`id` must be a string or an integer, got {}",
                other.kind()
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Loose::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }
}

enum Key {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "jsonrpc" => Key::Jsonrpc,
                    "id" => Key::Id,
                    "method" => Key::Method,
                    "params" => Key::Params,
                    "result" => Key::Result,
                    "error" => Key::Error,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

#[derive(Default)]
pub(super) struct RawObject<'a> {
    pub(super) jsonrpc: Option<Loose<'a>>,
    pub(super) id: Option<Loose<'a>>,
    pub(super) method: Option<Loose<'a>>,
    pub(super) params: Option<Value>,
    pub(super) result: Option<Box<RawValue>>,
    pub(super) error: Option<Value>,
    pub(super) duplicate: Option<&'static str>,
}

pub(super) enum RawItem<'a> {
    Object(RawObject<'a>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for RawItem<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawItemVisitor)
    }
}

struct RawItemVisitor;

fn set<T>(slot: &mut Option<T>, value: T, name: &'static str, dup: &mut Option<&'static str>) {
    if slot.is_some() {
        dup.get_or_insert(name);
    }
    *slot = Some(value);
}

impl<'de> Visitor<'de> for RawItemVisitor {
    type Value = RawItem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("a string"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawItem::NotObject("null"))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(RawItemVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawItem::NotObject("an array (batches cannot be nested)"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut o = RawObject::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Jsonrpc => {
                    let v = map.next_value()?;
                    set(&mut o.jsonrpc, v, "jsonrpc", &mut o.duplicate);
                }
                Key::Id => {
                    let v = map.next_value()?;
                    set(&mut o.id, v, "id", &mut o.duplicate);
                }
                Key::Method => {
                    let v = map.next_value()?;
                    set(&mut o.method, v, "method", &mut o.duplicate);
                }
                Key::Params => {
                    let v = map.next_value()?;
                    set(&mut o.params, v, "params", &mut o.duplicate);
                }
                Key::Result => {
                    let v = map.next_value()?;
                    set(&mut o.result, v, "result", &mut o.duplicate);
                }
                Key::Error => {
                    let v = map.next_value()?;
                    set(&mut o.error, v, "error", &mut o.duplicate);
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawItem::Object(o))
    }
}
