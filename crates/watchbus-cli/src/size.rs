//! Byte sizes in human form: `1MiB`, `64KiB`, `1MB`, `1048576`.
//!
//! A tiny parser rather than a crate: the accepted forms are few, the
//! ambiguous ones are spelled out below, and the error names what to write.
//!
//! * plain digits or a `B` suffix are bytes;
//! * `KiB`, `MiB`, `GiB`, `TiB` (and the short `K`, `M`, `G`, `T`, as `dd`
//!   and systemd read them) are powers of 1024;
//! * `KB`, `MB`, `GB`, `TB` are powers of 1000.
//!
//! Units are case-insensitive, may follow a space (`64 KiB`), and the number
//! is a whole number (write `1536KiB`, not `1.5MiB`).

/// Parses a byte size; the error is a sentence for a person.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid size `{text}`: expected a whole number of bytes with an optional unit, e.g. 1MiB, 64KiB or 1048576"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size `{text}`: the number is too large"))?;
    let multiplier = unit_multiplier(unit.trim()).ok_or_else(|| {
        format!(
            "invalid size `{text}`: unknown unit `{}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, and a whole number)",
            unit.trim()
        )
    })?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size `{text}`: too large"))
}

fn unit_multiplier(unit: &str) -> Option<u64> {
    const KI: u64 = 1 << 10;
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => KI,
        "m" | "mi" | "mib" => KI.pow(2),
        "g" | "gi" | "gib" => KI.pow(3),
        "t" | "ti" | "tib" => KI.pow(4),
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    Some(multiplier)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn plain_digits_are_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("12B"), Ok(12));
    }

    #[test]
    fn iec_units_are_powers_of_1024() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
    }

    #[test]
    fn si_units_are_powers_of_1000() {
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("3kB"), Ok(3_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
    }

    #[test]
    fn units_are_case_insensitive_and_may_follow_a_space() {
        assert_eq!(parse_size("64 kib"), Ok(64 << 10));
        assert_eq!(parse_size(" 1 MIB "), Ok(1 << 20));
    }

    #[test]
    fn garbage_is_rejected_with_a_hint() {
        for bad in ["", "MiB", "1.5MiB", "-1", "1 XB", "ten"] {
            let err = parse_size(bad).err();
            assert!(err.is_some(), "{bad:?} should be rejected");
        }
        let err = parse_size("1.5MiB").err().unwrap_or_default();
        assert!(err.contains("whole number"), "{err}");
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("17179869184GiB").is_err());
    }
}
