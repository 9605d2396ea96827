//! `--timeout` values as people write them: `90s`, `10m`, `1h30m`, or a bare number of seconds.

use std::time::Duration;

use k8s_openapi::jiff::SignedDuration;

/// Parses a timeout: jiff's friendly durations (`90s`, `10m`, `1h 30m`), ISO 8601 (`PT10M`) or
/// plain seconds (`600`). Zero and negative durations are refused.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => text
            .parse::<SignedDuration>()
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or_else(|| {
                format!("{text:?} is not a duration: write it like 90s, 10m or 1h30m")
            })?,
    };
    if duration.is_zero() {
        return Err("the timeout must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubectl_style_durations() {
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse("PT2M"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn refuses_nonsense_and_zero() {
        assert!(parse("soon").unwrap_err().contains("10m"));
        assert!(parse("0s").is_err());
        assert!(parse("-5m").is_err());
    }
}
