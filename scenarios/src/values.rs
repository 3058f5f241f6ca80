//! Scalar value types of the format: durations like `5s`, CIDRs, IP addresses and name sets.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as a number and a unit: `250ms`, `5s`, `1.5s`, `2m`, `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan(std::time::Duration);

impl TimeSpan {
    pub const ZERO: TimeSpan = TimeSpan(std::time::Duration::ZERO);

    pub fn from_millis(ms: u64) -> TimeSpan {
        TimeSpan(std::time::Duration::from_millis(ms))
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> u128 {
        self.0.as_millis()
    }
}

impl From<TimeSpan> for std::time::Duration {
    fn from(span: TimeSpan) -> Self {
        span.0
    }
}

/// Why a duration is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a duration: write a number followed by a unit (ms, s, m or h), such as `500ms`, `5s` or `1m30s`"
)]
pub struct TimeSpanError {
    text: String,
}

impl FromStr for TimeSpan {
    type Err = TimeSpanError;

    fn from_str(text: &str) -> Result<TimeSpan, TimeSpanError> {
        let fail = || TimeSpanError {
            text: text.to_owned(),
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(fail());
        }
        let mut nanos: f64 = 0.0;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(fail)?;
            if digits == 0 {
                return Err(fail());
            }
            let number: f64 = rest[..digits].parse().map_err(|_| fail())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(fail()),
            };
            rest = &rest[unit_len..];
            nanos += number * scale;
        }
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(fail());
        }
        Ok(TimeSpan(std::time::Duration::from_nanos(
            nanos.round() as u64
        )))
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimeSpan, D::Error> {
        struct SpanVisitor;
        impl Visitor<'_> for SpanVisitor {
            type Value = TimeSpan;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `500ms` or `5s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeSpan, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TimeSpan, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write `{v}s` or `{v}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TimeSpan, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit (and must not be negative): write e.g. `5s`"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TimeSpan, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write `{v}s`"
                )))
            }
        }
        d.deserialize_any(SpanVisitor)
    }
}

/// A network prefix written without host bits, such as `10.1.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(pub IpNet);

impl Cidr {
    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let net: IpNet = text.parse().map_err(|_| {
            format!("`{text}` is not a CIDR: write an address and a prefix length, such as `10.1.0.0/24`")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "`{text}` has host bits set: write the network address `{}`",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// An IP address field with a message that says how to write one.
pub fn ip_addr<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        de::Error::custom(format!(
            "`{text}` is not an IP address: write one such as `10.1.0.11` or `fd00::11`"
        ))
    })
}

/// An optional IP address field (see [`ip_addr`]).
pub fn opt_ip_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    ip_addr(d).map(Some)
}

/// Either every member (`all`) or a list of names; a single name may be written bare.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Members {
    #[default]
    All,
    Named(Vec<String>),
}

impl Members {
    /// The names listed, or none for `all`.
    pub fn names(&self) -> &[String] {
        match self {
            Members::All => &[],
            Members::Named(names) => names,
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Members::All)
    }
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Members::All => s.serialize_str("all"),
            Members::Named(names) => names.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all`, a name, or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Members, E> {
                Ok(if v == "all" {
                    Members::All
                } else {
                    Members::Named(vec![v.to_owned()])
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Members, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                if names.is_empty() {
                    return Err(de::Error::custom(
                        "empty list: name at least one member, or write `all`",
                    ));
                }
                Ok(Members::Named(names))
            }
        }
        d.deserialize_any(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let ms = |t: &str| t.parse::<TimeSpan>().map(|s| s.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("5s"), Ok(5000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn durations_without_units_or_with_junk_fail() {
        for bad in ["", "5", "s", "5 sec", "-1s", "5x", "1.2.3s"] {
            let err = bad.parse::<TimeSpan>().expect_err(bad);
            assert!(
                err.to_string()
                    .contains("write a number followed by a unit")
            );
        }
    }

    #[test]
    fn cidrs_reject_host_bits() {
        assert!("10.1.0.0/24".parse::<Cidr>().is_ok());
        let err = "10.1.0.5/24".parse::<Cidr>().unwrap_err();
        assert!(
            err.contains("write the network address `10.1.0.0/24`"),
            "{err}"
        );
        assert!("10.1.0.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn duration_display_round_trips() {
        for text in ["5s", "100ms", "1500ms"] {
            assert_eq!(text.parse::<TimeSpan>().unwrap().to_string(), text);
        }
    }
}
