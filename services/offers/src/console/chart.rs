//! The overview's chart: purchases per hour as stacked bars, drawn as SVG
//! on the server (colours as presentation attributes, so the page's
//! content security policy needs no inline style).

use maud::{Markup, html};
use offers_proto::account::v1::HourlyPurchases;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 180;
const AXIS: i64 = 20;

/// The bars, each hour's succeeded, failed and pending stacked, with the
/// tallest hour's total on the scale.
pub fn purchases(hours: &[HourlyPurchases]) -> Markup {
    let top = hours.iter().map(|h| h.succeeded + h.failed + h.pending).max().unwrap_or(0).max(1);
    let count = i64::try_from(hours.len()).unwrap_or(1).max(1);
    let slot = WIDTH / count;
    let plot = HEIGHT - AXIS;
    let scaled = |n: i64| n * plot / top;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label="Purchases per hour by final state" {
            line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) stroke="#888" stroke-width="1" {}
            text x="2" y="12" font-size="11" fill="#555" { (top) " per hour" }
            @for (i, hour) in hours.iter().enumerate() {
                @let x = i64::try_from(i).unwrap_or(0) * slot + 2;
                @let w = (slot - 4).max(1);
                @let (s, f, p) = (scaled(hour.succeeded), scaled(hour.failed), scaled(hour.pending));
                g {
                    title { (label(hour)) ": " (hour.succeeded) " succeeded, " (hour.failed) " failed, " (hour.pending) " pending" }
                    rect x=(x) y=(plot - s) width=(w) height=(s) fill="#2e7d32" {}
                    rect x=(x) y=(plot - s - f) width=(w) height=(f) fill="#c62828" {}
                    rect x=(x) y=(plot - s - f - p) width=(w) height=(p) fill="#f9a825" {}
                }
                @if i % 3 == 0 {
                    text x=(x) y=(HEIGHT - 5) font-size="10" fill="#555" { (label(hour)) }
                }
            }
        }
        p.legend {
            span.ok { "■ succeeded" } " " span.failed { "■ failed (refunded)" } " " span.pending { "■ pending" }
        }
    }
}

fn label(hour: &HourlyPurchases) -> String {
    hour.start_time
        .and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%H:00").to_string())
        .unwrap_or_default()
}
