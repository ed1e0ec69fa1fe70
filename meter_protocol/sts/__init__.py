"""STS keypad tokens (IEC 62055-41): the fallback when an SMS cannot reach a meter with a keypad.

Pure functions only: keys, times and random numbers come in as arguments.
"""

from meter_protocol.sts.errors import StsError, TokenRejected
from meter_protocol.sts.meter import Entered, Outcome, StsMeterState, enter_token
from meter_protocol.sts.misty1 import misty1_decrypt, misty1_encrypt
from meter_protocol.sts.tokens import (
    BASE_DATE_1993,
    BASE_DATE_2014,
    CreditKind,
    DecodedToken,
    DecoderKeyParameters,
    KeyChange,
    KeyChangeSection,
    ManagementKind,
    combine_key_change,
    decode_amount,
    decode_token,
    decoder_key_dkga02,
    decoder_key_dkga04,
    encode_amount,
    encode_credit_token,
    encode_key_change_set,
    encode_key_change_tokens,
    encode_management_token,
    largest_amount_at_most,
    read_key_change,
    sta_decrypt,
    sta_encrypt,
    token_crc,
    token_identifier,
)

__all__ = [
    "BASE_DATE_1993",
    "BASE_DATE_2014",
    "CreditKind",
    "DecodedToken",
    "DecoderKeyParameters",
    "Entered",
    "KeyChange",
    "KeyChangeSection",
    "ManagementKind",
    "Outcome",
    "StsError",
    "StsMeterState",
    "TokenRejected",
    "combine_key_change",
    "decode_amount",
    "decode_token",
    "decoder_key_dkga02",
    "decoder_key_dkga04",
    "encode_amount",
    "encode_credit_token",
    "encode_key_change_set",
    "encode_key_change_tokens",
    "encode_management_token",
    "enter_token",
    "largest_amount_at_most",
    "misty1_decrypt",
    "misty1_encrypt",
    "read_key_change",
    "sta_decrypt",
    "sta_encrypt",
    "token_crc",
    "token_identifier",
]
