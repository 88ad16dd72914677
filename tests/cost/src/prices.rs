//! Public AWS list prices, us-east-1, and what a measured workload costs at them.
//!
//! One table, in one place. Sources (public pricing pages, read 2026-11): Lambda
//! (aws.amazon.com/lambda/pricing), API Gateway (aws.amazon.com/api-gateway/pricing),
//! DynamoDB on-demand (aws.amazon.com/dynamodb/pricing/on-demand, after the November 2024
//! reduction), S3 Standard (aws.amazon.com/s3/pricing). First pricing tier everywhere;
//! no free tier. DynamoDB Streams reads by Lambda triggers are free.

/// Dollars per unit.
pub struct Prices {
    pub lambda_request: f64,
    /// x86_64; arm64 is 20% less.
    pub lambda_gb_second: f64,
    /// HTTP API, per request (metered in 512 KB increments).
    pub http_api_request: f64,
    /// WebSocket API, per message (metered in 32 KB increments), both directions.
    pub websocket_message: f64,
    pub websocket_connection_minute: f64,
    pub dynamodb_write_unit: f64,
    pub dynamodb_read_unit: f64,
    pub s3_put: f64,
    pub s3_get: f64,
}

pub const US_EAST_1: Prices = Prices {
    lambda_request: 0.20 / 1e6,
    lambda_gb_second: 0.000_016_666_7,
    http_api_request: 1.00 / 1e6,
    websocket_message: 1.00 / 1e6,
    websocket_connection_minute: 0.25 / 1e6,
    dynamodb_write_unit: 0.625 / 1e6,
    dynamodb_read_unit: 0.125 / 1e6,
    s3_put: 0.005 / 1e3,
    s3_get: 0.0004 / 1e3,
};

/// What a workload used, counted (requests, units) or measured (durations).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub lambda_requests: u64,
    /// Billed GB-seconds: each invocation's duration rounded up to 1 ms, times memory.
    pub lambda_gb_seconds: f64,
    pub http_api_requests: u64,
    pub websocket_messages: u64,
    pub websocket_connection_minutes: f64,
    pub dynamodb_write_units: f64,
    pub dynamodb_read_units: f64,
    pub s3_puts: u64,
    pub s3_gets: u64,
}

impl Usage {
    /// Every figure times `factor` (to scale a run to 1M tokens).
    pub fn scaled(&self, factor: f64) -> Usage {
        let n = |v: u64| (v as f64 * factor).round() as u64;
        Usage {
            lambda_requests: n(self.lambda_requests),
            lambda_gb_seconds: self.lambda_gb_seconds * factor,
            http_api_requests: n(self.http_api_requests),
            websocket_messages: n(self.websocket_messages),
            websocket_connection_minutes: self.websocket_connection_minutes * factor,
            dynamodb_write_units: self.dynamodb_write_units * factor,
            dynamodb_read_units: self.dynamodb_read_units * factor,
            s3_puts: n(self.s3_puts),
            s3_gets: n(self.s3_gets),
        }
    }

    /// Dollars per line item, in a fixed order.
    pub fn cost(&self, p: &Prices) -> Vec<(&'static str, f64)> {
        vec![
            (
                "Lambda requests",
                self.lambda_requests as f64 * p.lambda_request,
            ),
            (
                "Lambda duration",
                self.lambda_gb_seconds * p.lambda_gb_second,
            ),
            (
                "HTTP API requests",
                self.http_api_requests as f64 * p.http_api_request,
            ),
            (
                "WebSocket messages",
                self.websocket_messages as f64 * p.websocket_message,
            ),
            (
                "WebSocket connection minutes",
                self.websocket_connection_minutes * p.websocket_connection_minute,
            ),
            (
                "DynamoDB writes",
                self.dynamodb_write_units * p.dynamodb_write_unit,
            ),
            (
                "DynamoDB reads",
                self.dynamodb_read_units * p.dynamodb_read_unit,
            ),
            (
                "S3 requests",
                self.s3_puts as f64 * p.s3_put + self.s3_gets as f64 * p.s3_get,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_of_each_costs_the_list_price() {
        let usage = Usage {
            lambda_requests: 1_000_000,
            lambda_gb_seconds: 1.0,
            http_api_requests: 1_000_000,
            websocket_messages: 1_000_000,
            websocket_connection_minutes: 1e6,
            dynamodb_write_units: 1e6,
            dynamodb_read_units: 1e6,
            s3_puts: 1000,
            s3_gets: 1000,
        };
        let cost: Vec<f64> = usage.cost(&US_EAST_1).into_iter().map(|(_, c)| c).collect();
        let expected = [
            0.20,
            0.000_016_666_7,
            1.00,
            1.00,
            0.25,
            0.625,
            0.125,
            0.0054,
        ];
        for (got, want) in cost.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
    }

    #[test]
    fn scaling_multiplies_every_figure() {
        let usage = Usage {
            lambda_requests: 3,
            dynamodb_write_units: 1.5,
            websocket_connection_minutes: 0.5,
            ..Usage::default()
        };
        let scaled = usage.scaled(10.0);
        assert_eq!(scaled.lambda_requests, 30);
        assert_eq!(scaled.dynamodb_write_units, 15.0);
        assert_eq!(scaled.websocket_connection_minutes, 5.0);
    }
}
