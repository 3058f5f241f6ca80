//! Health-check settings of a link: parsed from the governing scope, defaults when unset.

use std::time::Duration;

use crate::api::HealthCheckSettings;

/// Probe interval when a scope does not set one.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Missed intervals before a peer is declared down, when a scope does not set it.
pub const DEFAULT_DETECT_MULTIPLIER: u32 = 3;

/// Resolved health-check settings of one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub enabled: bool,
    pub transmit_interval: Duration,
    pub receive_interval: Duration,
    pub multiplier: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            enabled: true,
            transmit_interval: DEFAULT_PROBE_INTERVAL,
            receive_interval: DEFAULT_PROBE_INTERVAL,
            multiplier: DEFAULT_DETECT_MULTIPLIER,
        }
    }
}

/// A health-check field that cannot be used; the default is used in its place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HealthSettingError {
    #[error(
        "{field} {value:?} is not a duration: write a number with a unit, e.g. \"300ms\", \"1s\", \"1m30s\""
    )]
    BadDuration { field: &'static str, value: String },
    #[error("{field} {value:?} must be between 1ms and 1h")]
    DurationOutOfRange { field: &'static str, value: String },
    #[error("detectMultiplier {0} must be between 1 and 255")]
    BadMultiplier(u32),
}

/// Parses a Go/Kubernetes-style duration: one or more `<number><unit>` terms, units `ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h`; numbers may have a fractional part (`1.5s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_nanos += number * scale;
    }
    // Bound before converting: `as u64` saturates, but a day is already nonsense here.
    if !total_nanos.is_finite() || total_nanos > 86_400e9 {
        return None;
    }
    Some(Duration::from_nanos(total_nanos.round() as u64))
}

fn interval(
    field: &'static str,
    value: Option<&String>,
    errors: &mut Vec<HealthSettingError>,
) -> Duration {
    let Some(value) = value else {
        return DEFAULT_PROBE_INTERVAL;
    };
    match parse_duration(value) {
        Some(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(3600) => d,
        Some(_) => {
            errors.push(HealthSettingError::DurationOutOfRange {
                field,
                value: value.clone(),
            });
            DEFAULT_PROBE_INTERVAL
        }
        None => {
            errors.push(HealthSettingError::BadDuration {
                field,
                value: value.clone(),
            });
            DEFAULT_PROBE_INTERVAL
        }
    }
}

/// Resolves a scope's settings; unusable fields fall back to their defaults and are returned
/// as errors for the scope's conditions.
pub fn resolve_health(
    settings: Option<&HealthCheckSettings>,
) -> (HealthSettings, Vec<HealthSettingError>) {
    let mut errors = Vec::new();
    let Some(s) = settings else {
        return (HealthSettings::default(), errors);
    };
    let multiplier = match s.detect_multiplier {
        None => DEFAULT_DETECT_MULTIPLIER,
        Some(m) if (1..=255).contains(&m) => m,
        Some(m) => {
            errors.push(HealthSettingError::BadMultiplier(m));
            DEFAULT_DETECT_MULTIPLIER
        }
    };
    let resolved = HealthSettings {
        enabled: s.enabled.unwrap_or(true),
        transmit_interval: interval(
            "transmitInterval",
            s.transmit_interval.as_ref(),
            &mut errors,
        ),
        receive_interval: interval("receiveInterval", s.receive_interval.as_ref(), &mut errors),
        multiplier,
    };
    (resolved, errors)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("100ms", Some(Duration::from_millis(100)))]
    #[case("1s", Some(Duration::from_secs(1)))]
    #[case("1.5s", Some(Duration::from_millis(1500)))]
    #[case("1m30s", Some(Duration::from_secs(90)))]
    #[case("250us", Some(Duration::from_micros(250)))]
    #[case("2h", Some(Duration::from_secs(7200)))]
    #[case("", None)]
    #[case("10", None)]
    #[case("s", None)]
    #[case("1x", None)]
    #[case("1..2s", None)]
    #[case("-1s", None)]
    #[case("99999h", None)]
    fn durations(#[case] text: &str, #[case] want: Option<Duration>) {
        assert_eq!(parse_duration(text), want);
    }

    #[test]
    fn unset_settings_are_defaults() {
        let (h, errs) = resolve_health(None);
        assert_eq!(h, HealthSettings::default());
        assert!(errs.is_empty());
    }

    #[test]
    fn set_fields_override_defaults() {
        let s = HealthCheckSettings {
            enabled: Some(false),
            transmit_interval: Some("200ms".into()),
            receive_interval: Some("300ms".into()),
            detect_multiplier: Some(5),
        };
        let (h, errs) = resolve_health(Some(&s));
        assert!(errs.is_empty());
        assert_eq!(
            h,
            HealthSettings {
                enabled: false,
                transmit_interval: Duration::from_millis(200),
                receive_interval: Duration::from_millis(300),
                multiplier: 5,
            }
        );
    }

    #[test]
    fn bad_fields_fall_back_and_are_reported() {
        let s = HealthCheckSettings {
            enabled: None,
            transmit_interval: Some("fast".into()),
            receive_interval: Some("2h".into()),
            detect_multiplier: Some(0),
        };
        let (h, errs) = resolve_health(Some(&s));
        assert_eq!(h, HealthSettings::default());
        assert_eq!(errs.len(), 3);
        assert!(errs[0].to_string().contains("detectMultiplier 0"));
        assert!(errs[1].to_string().contains("transmitInterval \"fast\""));
        assert!(errs[2].to_string().contains("between 1ms and 1h"));
    }
}
