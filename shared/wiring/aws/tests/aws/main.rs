//! The AWS wiring on DynamoDB Local and a local S3 server, in one test binary (each linked
//! binary costs CI a link of the AWS SDK).

mod archiver;
mod bedrock;
mod claim_check;
mod common;
mod dispatch;
mod evals;
mod grading;
mod s3;
