import { graphql } from '../gql';

// What every mutation asks of its result union's error members, spread as `...ErrorFields`:
// the code and message (all of them), each field's problem (InvalidInputError) and when to try
// again (UnavailableError). describeApiError() words exactly these fields.
export const ErrorFieldsFragment = graphql(`
  fragment ErrorFields on Error {
    code
    message
    ... on InvalidInputError {
      fieldErrors {
        field
        message
      }
    }
    ... on UnavailableError {
      retryAfterSeconds
    }
  }
`);
