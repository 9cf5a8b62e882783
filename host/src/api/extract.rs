//! Extractors that wrap axum's so that every rejection (bad JSON, wrong
//! content type, body too large, bad query string, bad path) is an
//! [`ApiError`] in the one JSON error shape, never axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body (`Content-Type: application/json` required).
#[derive(Debug)]
pub(crate) struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

/// A JSON body that may be left out entirely (an empty body is `T::default()`);
/// when present it must be JSON with a JSON content type.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        Ok(OptionalJson(parse_json(&headers, &bytes)?))
    }
}

/// Checks the content type, then parses `bytes` as JSON with a message that
/// names the path to the offending field.
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, ApiError> {
    require_json_content_type(headers)?;
    // Parsed without tracking the path first, which costs on every field
    // of every event of a batch; a body that fails is parsed again, with
    // the path, for the message.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    Ok(value)
}

/// `application/json` or `application/<something>+json`, parameters allowed.
pub(crate) fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence {
        Some(m) if m == "application/json" => Ok(()),
        Some(m) if m.starts_with("application/") && m.ends_with("+json") => Ok(()),
        Some(m) => Err(ApiError::unsupported_media_type(format!(
            "expected `Content-Type: application/json`, got `{m}`"
        ))),
        None => Err(ApiError::unsupported_media_type(
            "expected `Content-Type: application/json`; the request has no content type",
        )),
    }
}

/// A query string; unknown parameters and bad values are 400s naming them.
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// Path parameters.
#[derive(Debug)]
pub(crate) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// Page size when a query gives no `limit`.
pub(crate) const PAGE_DEFAULT: usize = 100;
/// Largest `limit` a query may ask for (the store caps pages at the same size).
pub(crate) const PAGE_MAX: usize = 1000;

/// The page size of a `limit` query parameter: 1 to [`PAGE_MAX`].
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(n @ 1..=PAGE_MAX) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "`limit` is {n}; it must be 1 to {PAGE_MAX}"
        ))),
    }
}

/// A time query parameter (`since`, `until`, `before`): milliseconds since
/// the Unix epoch, or an RFC 3339 date-time (`2024-05-01T12:00:00Z`,
/// `2024-05-01T14:00:00.250+02:00`; without an offset it is UTC). A time
/// before 1970 counts as 1970: nothing Hookbox stores is older.
pub(crate) fn parse_time(param: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(v) = value else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Some(ms));
    }
    let ms = rfc3339_ms(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{param}` {v:?} is neither milliseconds since the epoch nor an RFC 3339 \
             date-time like `2024-05-01T12:00:00Z`"
        ))
    })?;
    Ok(Some(u64::try_from(ms).unwrap_or(0)))
}

/// Milliseconds since the epoch (negative before 1970) of an RFC 3339
/// date-time: `YYYY-MM-DD`, `T` (or `t` or a space), `HH:MM:SS`, optional
/// fraction (kept to the millisecond), optional `Z` or `±HH:MM` offset.
fn rfc3339_ms(s: &str) -> Option<i64> {
    fn num(s: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let n = s
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<i64>().ok())??;
        range.contains(&n).then_some(n)
    }
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month) = (num(s.get(0..4)?, 0..=9999)?, num(s.get(5..7)?, 1..=12)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let day = num(s.get(8..10)?, 1..=days_in_month)?;
    let hour = num(s.get(11..13)?, 0..=23)?;
    let minute = num(s.get(14..16)?, 0..=59)?;
    let second = num(s.get(17..19)?, 0..=60)?;
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let ms3: String = frac[..digits].chars().chain("00".chars()).take(3).collect();
        millis = num(&ms3, 0..=999)?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hh = num(std::str::from_utf8(&[*h1, *h2]).ok()?, 0..=23)?;
            let mm = num(std::str::from_utf8(&[*m1, *m2]).ok()?, 0..=59)?;
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (hh * 60 + mm)
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Deserializes an optional whole number that JSON may write as an integer
/// or as an integral float (`650.0`: JSON Schema's `integer` admits both).
pub(crate) fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|w| T::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "invalid value: {n}, expected a whole number in range"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    #[test]
    fn times_are_ms_or_rfc3339() {
        assert_eq!(parse_time("since", None).unwrap(), None);
        assert_eq!(
            parse_time("since", Some("1700000000000")).unwrap(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("since", Some("2024-01-01T00:00:00Z")).unwrap(),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_time("since", Some("2024-01-01T00:00:00.5Z")).unwrap(),
            Some(1_704_067_200_500)
        );
        let e = parse_time("until", Some("yesterday")).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // Offsets, a lower-case `t` and `z`, a space, no offset (UTC),
        // fractions past the millisecond.
        for (text, ms) in [
            ("2024-01-01T02:00:00+02:00", 1_704_067_200_000),
            ("2023-12-31T19:30:00-04:30", 1_704_067_200_000),
            ("2024-01-01t00:00:00z", 1_704_067_200_000),
            ("2024-01-01 00:00:00", 1_704_067_200_000),
            ("2024-01-01T00:00:00.123456789Z", 1_704_067_200_123),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
            ("1970-01-01T00:00:00Z", 0),
            // Before 1970 counts as 1970.
            ("1969-12-31T23:59:59Z", 0),
            ("0000-01-01T00:00:00Z", 0),
            ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        ] {
            assert_eq!(parse_time("since", Some(text)).unwrap(), Some(ms), "{text}");
        }
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+2:00",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00ZZ",
            "2024-01-01X00:00:00Z",
            "+024-01-01T00:00:00Z",
            "2024-01-01T00:00",
            "18446744073709551616",
            "é024-01-01T00:00:00Z",
        ] {
            let e = parse_time("since", Some(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn whole_numbers_may_be_written_as_integral_floats() {
        #[derive(serde::Deserialize)]
        struct V {
            #[serde(default, deserialize_with = "whole")]
            v: Option<u32>,
        }
        let v = |text: &str| serde_json::from_str::<V>(text).map(|v| v.v);
        assert_eq!(v(r#"{"v": 650}"#).unwrap(), Some(650));
        assert_eq!(v(r#"{"v": 650.0}"#).unwrap(), Some(650));
        assert_eq!(v(r#"{"v": 6.5e2}"#).unwrap(), Some(650));
        assert_eq!(v(r#"{"v": null}"#).unwrap(), None);
        assert_eq!(v("{}").unwrap(), None);
        for bad in [
            r#"{"v": 1.5}"#,
            r#"{"v": -1}"#,
            r#"{"v": 4294967296}"#,
            r#"{"v": "1"}"#,
        ] {
            assert!(v(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None).unwrap(), PAGE_DEFAULT);
        assert_eq!(page_limit(Some(PAGE_MAX)).unwrap(), PAGE_MAX);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(PAGE_MAX + 1)).is_err());
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            require_json_content_type(&h).is_ok()
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(require_json_content_type(&HeaderMap::new()).is_err());
    }
}
