"""The STS conformance cases (STS 531-1-0, CTSA02-CTSA26) by their published token numbers, both ways: each
token is issued from the case's inputs and decodes back to them under the meter's key.

Vending keys: VUDK abababababababab (DKGA02, EA07) or the 160-bit abab…01234567 (DKGA04, EA07 or EA11/MISTY1);
PAN 600727000000000009 (or 000001000000000082), KT 2, SGC 123456 (DKGA02) / 123457 (DKGA04), TI 01, KRN 1,
random 5, base date 1993 unless a row says otherwise. "-04" rows are the MISTY1 (STS6) edition of a case (STS
531-1-0-04), "-07" rows the base date 2014 edition (STS 531-1-07: DKGA04 with STA, or EA11 where marked, SGC 201457).
Where a case asks for an amount a token cannot carry exactly, the published token carries the next amount up;
the rows give that carried amount and `test_inexact_amounts_are_published_as_the_next_amount_up` the pairs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from functools import cache

import pytest

from meter_protocol.sts import (
    BASE_DATE_1993,
    BASE_DATE_2014,
    CreditKind,
    DecoderKeyParameters,
    KeyChange,
    ManagementKind,
    Outcome,
    StsError,
    StsMeterState,
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
    encode_meter_test_token,
    enter_token,
    largest_amount_at_most,
    read_key_change,
    token_identifier,
)

VUDK_64 = bytes.fromhex("abababababababab")
VUDK_160 = bytes.fromhex("abababababababab949494949494949401234567")
BASE_DATE_2035 = datetime(2035, 1, 1, tzinfo=UTC)
PAN_A = DecoderKeyParameters("600727", "00000000000", 2, "123456", "01", 1)  # 600727000000000009
DKGA04_A = replace(PAN_A, supply_group_code="123457")
EDITION_07 = replace(PAN_A, supply_group_code="201457")
ELECTRICITY, WATER, GAS = CreditKind.ELECTRICITY, CreditKind.WATER, CreditKind.GAS
POWER, UNBALANCE = ManagementKind.SET_MAXIMUM_POWER, ManagementKind.SET_MAXIMUM_PHASE_POWER_UNBALANCE_LIMIT
CLEAR = ManagementKind.CLEAR_CREDIT


@cache
def _key(name: str) -> bytes:
    if name == "sta":  # DKGA02, EA07
        return decoder_key_dkga02(VUDK_64, PAN_A)
    if name == "misty1":  # DKGA04, EA11
        return decoder_key_dkga04(VUDK_160, DKGA04_A, base_date=BASE_DATE_1993)
    if name == "dkga04-sta":  # DKGA04, EA07
        return decoder_key_dkga04(VUDK_160, DKGA04_A, base_date=BASE_DATE_1993, key_bits=64)
    if name == "sta-07":  # STS 531-1-07: DKGA04, EA07, SGC 201457, base date 2014
        return decoder_key_dkga04(VUDK_160, EDITION_07, base_date=BASE_DATE_2014, key_bits=64)
    assert name == "misty1-07"  # the same edition with EA11
    return decoder_key_dkga04(VUDK_160, EDITION_07, base_date=BASE_DATE_2014)


def _tid(key_name: str, issued_at: str) -> int:
    return token_identifier(_at(issued_at), BASE_DATE_2014 if key_name.endswith("-07") else BASE_DATE_1993)


def _series(case: str, kind: CreditKind | ManagementKind, day: str, times: str, tokens: str) -> list[tuple[str, ...]]:
    """A 531-1-07 EA11 boundary series: the nine carried amounts at the given times of one day."""
    carried = (256, 16383, 16384, 20004, 180224, 180224, 1818624, 1818624, 18201624)
    rows = zip(carried, times.split(), tokens.split(), strict=True)
    return [(f"{case} step {n}", "misty1-07", kind, units, f"{day} {at}", token) for n, (units, at, token) in
            enumerate(rows, start=1)]  # fmt: skip


def _at(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def _amounts(case: str, key: str, kind: CreditKind | ManagementKind, start: str, tokens: str) -> list[tuple[str, ...]]:
    """CTSA10/12/13: the nine boundary amounts, five minutes apart (the last three after 01:44 / +30 min)."""
    carried = (256, 16383, 16384, 20004, 180224, 180224, 1818624, 1818624, 18201624)
    day, hour, minute = start[:10], int(start[11:13]), int(start[14:16])
    offsets = (0, 5, 10, 15, 20, 25, 74, 79, 84) if isinstance(kind, CreditKind) else (0, 5, 10, 15, 20, 25, 30, 35, 40)
    rows = []
    for step, (units, offset, token) in enumerate(zip(carried, offsets, tokens.split(), strict=True), start=1):
        total = hour * 60 + minute + offset
        rows.append((f"{case} step {step}", key, kind, units, f"{day} {total // 60:02d}:{total % 60:02d}", token))
    return rows


# the times of the CTSA10, CTSA12 and CTSA13 steps of the 531-1-07 EA11 edition
_T10 = "00:30 00:35 00:40 00:45 00:50 00:55 01:44 02:49 03:54"
_T12 = "07:00 07:05 07:10 07:15 07:20 07:25 07:30 07:35 07:40"
_T13 = "08:00 08:05 08:10 08:15 08:20 08:25 08:30 08:35 08:40"

# (case, key, kind, value: units / W / register, issued at, published token)
CASES: list[tuple[object, ...]] = [
    ("CTSA07", "sta", UNBALANCE, 10, "2004-03-28 10:20", "30220533115430798647"),
    ("CTSA07-04", "misty1", UNBALANCE, 10, "2004-03-28 10:20", "16135127146988830614"),
    ("CTSA09 step 1", "sta", CLEAR, 0xFFFF, "2004-03-29 00:00", "10208942296089183521"),
    # step 2 is listed at 00:01; its published tokens (both editions) carry the TID of 00:02
    ("CTSA09 step 2", "sta", CLEAR, 0xFFFF, "2004-03-29 00:02", "20388873191656671689"),
    ("CTSA09 step 3a", "sta", CLEAR, 0xFFFF, "2004-03-29 00:03", "43348834939937913498"),
    ("CTSA09 step 3b", "sta", CLEAR, 0xFFFF, "2004-03-29 00:04", "51681104150374451564"),
    ("CTSA09 step 3c", "sta", CLEAR, 0xFFFF, "2004-03-29 00:05", "50526247723864280405"),
    ("CTSA09-04 step 1", "misty1", CLEAR, 0xFFFF, "2004-03-29 00:00", "09791211239166238461"),
    ("CTSA09-04 step 2", "misty1", CLEAR, 0xFFFF, "2004-03-29 00:02", "18070818655140104337"),
    ("CTSA09-04 step 3a", "misty1", CLEAR, 0xFFFF, "2004-03-29 00:03", "59463760341829598722"),
    ("CTSA09-04 step 3b", "misty1", CLEAR, 0xFFFF, "2004-03-29 00:04", "49512072598296997272"),
    ("CTSA09-04 step 3c", "misty1", CLEAR, 0xFFFF, "2004-03-29 00:05", "59135803195278393273"),
    *_amounts("CTSA10 electricity", "sta", ELECTRICITY, "2004-04-01 00:30",
              "26456622012185850752 02194538019157867319 49848950875249585071 71997443697501228179 "
              "58589277912776864555 16328229234437142451 45001756646344378677 15810488151857362998 "
              "42222423067848970276"),
    *_amounts("CTSA10 water", "sta", WATER, "2004-04-01 00:30",
              "44275716003808438853 18252763951429538816 27315011099256270180 63822263014624002901 "
              "09641054211308025667 44446096428101342168 28708466031297612806 10341114843091227763 "
              "05942777944950076038"),
    *_amounts("CTSA10 gas", "sta", GAS, "2004-04-01 00:30",
              "55421978213496083894 19542256788533803049 00240351248989131846 09767096307961035977 "
              "48113663060937699726 03981404420542897416 14196243940519813244 49902394914324621132 "
              "13610552847224033160"),
    *_amounts("CTSA10-04 electricity", "misty1", ELECTRICITY, "2004-04-01 00:30",
              "63638916334124550935 06736163174944595611 45798100519745983712 08362487434932116862 "
              "33933484656539803471 40075282658655256325 00383912203740575049 32272089791250978565 "
              "44964671935361377806"),
    *_amounts("CTSA10-04 water", "misty1", WATER, "2004-04-01 00:30",
              "08844040967758161989 41707569065487034639 61826851589850099670 72478269627942954182 "
              "12311110365531155223 68979561791500831417 36130214068866912790 49560207524955523897 "
              "47575512827888817714"),
    *_amounts("CTSA10-04 gas", "misty1", GAS, "2004-04-01 00:30",
              "34672027639183365663 70087969935165138265 60875440664020961982 16605563156243942378 "
              "16614677156798904170 49208263727993294856 38374198840578367339 34384673009506006509 "
              "40332503820747813730"),
    *_amounts("CTSA12", "sta", POWER, "2004-04-01 07:00",
              "41932934023937597177 39962525051716972228 49726922948713857933 49240429350369491663 "
              "59901462710025767433 19230023168014606006 15202793104399278539 39289527337368539951 "
              "64902502692705103624"),
    *_amounts("CTSA12-04", "misty1", POWER, "2004-04-01 07:00",
              "58601433826945463485 13997395479415026219 18037738085263294820 06738975074638745925 "
              "66354091567942569601 62853351521017859877 40984149905900332649 26882838654580901052 "
              "29255956459122361629"),
    *_amounts("CTSA13", "sta", UNBALANCE, "2004-04-01 08:00",
              "31529222328157245680 73693330413053816261 54550534704168942701 59764600311380323340 "
              "40345762458084906193 66940669945224810632 39456295247583474882 71498975780521030688 "
              "57078032150370797843"),
    *_amounts("CTSA13-04", "misty1", UNBALANCE, "2004-04-01 08:00",
              "23509767215559230954 70247784567899484178 36304916073545542570 11066406403853302811 "
              "25512033356036953640 13785431682542358258 06889958680004063872 27410125084608663818 "
              "60786080230724485517"),
    ("CTSA14 step 1", "sta", CLEAR, 0, "2004-04-01 09:00", "24406351748405762287"),
    ("CTSA14 step 2", "sta", CLEAR, 0xFFFF, "2004-04-01 09:05", "48263195037886996694"),
    ("CTSA14 step 3", "sta", CLEAR, 4, "2004-04-01 09:10", "17696673116286267663"),
    ("CTSA14 step 4", "sta", CLEAR, 5, "2004-04-01 09:15", "47739859634763202644"),
    ("CTSA14 step 5", "sta", CLEAR, 6, "2004-04-01 09:20", "23456948011089526127"),
    ("CTSA14 step 6", "sta", CLEAR, 7, "2004-04-01 09:25", "51867282903899304686"),
    ("CTSA14-04 step 1", "misty1", CLEAR, 0, "2004-04-01 09:00", "06768431134031257922"),
    ("CTSA14-04 step 2", "misty1", CLEAR, 0xFFFF, "2004-04-01 09:05", "59338638600207707879"),
    ("CTSA14-04 step 3", "misty1", CLEAR, 4, "2004-04-01 09:10", "48872720007959408665"),
    ("CTSA14-04 step 4", "misty1", CLEAR, 5, "2004-04-01 09:15", "51810809087550125677"),
    ("CTSA14-04 step 5", "misty1", CLEAR, 6, "2004-04-01 09:20", "13848051316848177124"),
    ("CTSA14-04 step 6", "misty1", CLEAR, 7, "2004-04-01 09:25", "63506294564247105352"),
    ("CTSA21 step 1", "sta", WATER, 10, "2005-05-23 10:01", "15415954497866603070"),
    ("CTSA21 step 2", "sta", WATER, 163834, "2005-05-24 10:02", "37577557589608193918"),
    ("CTSA21 step 3", "sta", WATER, 163844, "2006-04-23 23:10", "64605231735471529556"),
    ("CTSA21 step 4", "sta", WATER, 1802324, "2006-04-24 10:04", "61396462165248534316"),
    ("CTSA21 step 5", "sta", WATER, 18186624, "2006-04-24 11:00", "27442853458265256809"),
    ("CTSA21 step 6", "sta", WATER, 1822624, "2006-04-24 11:01", "60366325560961667086"),
    ("CTSA21 step 7", "sta", WATER, 1823624, "2006-04-24 11:02", "49837510367703553651"),
    ("CTSA21 step 8", "sta", WATER, 1820624, "2006-04-24 11:03", "65892074689465900210"),
    ("CTSA21 step 9", "sta", WATER, 1825, "2006-04-24 11:04", "31056801750423680816"),
    ("CTSA21 step 10", "sta", WATER, 16744, "2006-04-24 11:05", "20363556736975891316"),
    ("CTSA21 step 11", "sta", WATER, 0, "2006-04-24 20:10", "16838670950350007721"),
    ("CTSA21 step 12", "sta", WATER, 176544, "2006-04-24 11:00", "20884251612329507769"),
    ("CTSA21 step 13", "sta", WATER, 1230, "2006-04-24 20:12", "29433837651179279051"),
    ("CTSA21 step 14", "sta", WATER, 1802324, "2006-04-24 20:14", "56221045810819914754"),
    ("CTSA21 step 15", "sta", WATER, 156714, "2006-05-12 20:15", "07426208391727345260"),
    ("CTSA22 step 1", "sta", GAS, 10, "2006-04-26 10:01", "30790445533281098559"),
    ("CTSA22 step 2", "sta", GAS, 163834, "2006-05-27 10:02", "42894813892015838675"),
    ("CTSA22 step 3", "sta", GAS, 163844, "2007-04-23 10:03", "52434363099394415104"),
    ("CTSA22 step 4", "sta", GAS, 1802324, "2007-04-24 10:04", "02188175533508938765"),
    ("CTSA22 step 5", "sta", GAS, 188324, "2007-04-25 11:00", "37844075275013703544"),
    ("CTSA22 step 6", "sta", GAS, 1826624, "2007-04-26 11:01", "21792662786579369978"),
    ("CTSA22 step 7", "sta", GAS, 182124, "2007-04-26 11:02", "49679852898684944605"),
    ("CTSA22 step 8", "sta", GAS, 426324, "2007-04-26 11:03", "23701256401082544774"),
    ("CTSA22 step 9", "sta", GAS, 1820624, "2007-04-26 11:04", "37625880630538746268"),
    ("CTSA22 step 10", "sta", GAS, 178144, "2007-04-26 11:05", "41502904237047264837"),
    ("CTSA22 step 11", "sta", GAS, 1203524, "2007-04-26 20:10", "69115163697886873528"),
    ("CTSA22 step 12", "sta", GAS, 104494, "2007-04-26 11:00", "57141025105111259130"),
    ("CTSA22 step 13", "sta", GAS, 124494, "2007-04-26 20:12", "07841085711493671481"),
    ("CTSA22 step 14", "sta", GAS, 802324, "2007-04-26 20:14", "53540735038206224963"),
    ("CTSA22 step 15", "sta", GAS, 1204224, "2007-04-26 20:15", "64397019565756691049"),
    ("CTSA24", "dkga04-sta", CLEAR, 0xFFFF, "2008-05-26 08:00", "08144275084202187413"),
    ("CTSA07-07", "sta-07", UNBALANCE, 10, "2025-03-28 10:20", "31712008499351797283"),
    ("CTSA09-07 step 1", "sta-07", CLEAR, 0xFFFF, "2026-07-29 00:00", "42494289318823200303"),
    ("CTSA09-07 step 2", "sta-07", CLEAR, 0xFFFF, "2026-07-29 00:02", "68645810801068127886"),
    ("CTSA09-07 step 3", "sta-07", CLEAR, 0xFFFF, "2026-07-29 00:03", "27053689813927231094"),
    ("CTSA10-07 step 1", "sta-07", ELECTRICITY, 256, "2024-04-01 00:30", "35564630509785701608"),
    ("CTSA10-07 step 2", "sta-07", ELECTRICITY, 16383, "2024-04-01 00:35", "40774607583449589001"),
    ("CTSA10-07 step 3", "sta-07", ELECTRICITY, 16384, "2024-04-01 00:40", "44332531357987631349"),
    ("CTSA10-07 step 4", "sta-07", ELECTRICITY, 20004, "2024-04-01 00:45", "08609861427895583861"),
    ("CTSA10-07 step 5", "sta-07", ELECTRICITY, 180224, "2024-04-01 00:50", "17721942457820321090"),
    ("CTSA12-07 step 1", "sta-07", POWER, 256, "2026-04-01 07:00", "25649099806439688818"),
    ("CTSA12-07 step 2", "sta-07", POWER, 16383, "2026-04-01 07:05", "55639962301745043027"),
    ("CTSA12-07 step 3", "sta-07", POWER, 16384, "2026-04-01 07:10", "33674864391913405372"),
    ("CTSA12-07 step 4", "sta-07", POWER, 20004, "2026-04-01 07:15", "02020070491797160201"),
    ("CTSA13-07 step 1", "sta-07", UNBALANCE, 256, "2025-04-01 08:00", "49889284181676095740"),
    ("CTSA13-07 step 2", "sta-07", UNBALANCE, 16383, "2025-04-01 08:05", "63894111665802140435"),
    ("CTSA14-07", "sta-07", CLEAR, 0xFFFF, "2026-04-01 09:05", "67798335610870153959"),
    ("CTSA07-07 EA11", "misty1-07", UNBALANCE, 10, "2024-03-28 10:20", "36061906132461210546"),
    *_series("CTSA10-07 EA11 electricity", ELECTRICITY, "2026-07-11", _T10,
             "23641553665398154702 25891865080203617683 27615769059012110139 66334093569093275152 "
             "54469257374159496590 32152659949137970265 51737434305635144582 03704036270074955413 "
             "27589639248460087544"),
    *_series("CTSA10-07 EA11 water", WATER, "2026-07-11", _T10,
             "09583268197646717908 14701698770430896760 34002938922849266884 67142506820412673779 "
             "38879081919665071085 73510229760371224859 12892756012644223549 39080250447679587151 "
             "18624152595209544039"),
    *_series("CTSA10-07 EA11 gas", GAS, "2026-07-11", _T10,
             "44986114089866172191 22201321751005367123 66032647604906062472 00402401149010426708 "
             "30551311485558612857 65294529708117356090 39490034288849495633 04921144648966576098 "
             "16612725717522251986"),
    *_series("CTSA10-07 EA11 time", CreditKind.TIME, "2026-07-11", _T10,
             "43745038114561879026 55109344998744867787 38317498768072870648 51067046879240031527 "
             "15955566404192142866 20082638770203381988 17704294297724939274 25549082023926279371 "
             "16426719047193188319"),
    *_series("CTSA12-07 EA11", POWER, "2027-12-15", _T12,
             "08696877107489772342 12981641761770490283 70466640458497844971 06096117389509881002 "
             "20220432621391913192 18213277130409819867 63591892756069598223 08502056596267687018 "
             "46810404514626591449"),
    *_series("CTSA13-07 EA11", UNBALANCE, "2027-12-15", _T13,
             "33659574938702049734 37865901175460435734 14945501190635370267 66587780687462000679 "
             "39525526509425785956 13306442638828107790 03223893048550786553 39059189029995625564 "
             "11678265982462269502"),
    ("CTSA14-07 EA11 step 1", "misty1-07", CLEAR, 0, "2034-07-03 09:00", "50801913318644626174"),
    ("CTSA14-07 EA11 step 2", "misty1-07", CLEAR, 1, "2034-07-03 09:01", "35836988058753793602"),
    ("CTSA14-07 EA11 step 3", "misty1-07", CLEAR, 2, "2034-07-03 09:02", "55265472216845386252"),
    ("CTSA14-07 EA11 step 4", "misty1-07", CLEAR, 3, "2034-07-03 09:03", "66102829912811511687"),
    ("CTSA14-07 EA11 step 5", "misty1-07", CLEAR, 0xFFFF, "2034-07-03 09:05", "43640653419202643137"),
    ("CTSA14-07 EA11 step 6", "misty1-07", CLEAR, 4, "2034-07-03 09:10", "27341708351519231651"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "key_name", "kind", "value", "issued_at", "published"), CASES)
def test_class_0_and_2_tokens_are_the_published_numbers_both_ways(
    case: str, key_name: str, kind: CreditKind | ManagementKind, value: int, issued_at: str, published: str
) -> None:
    key = _key(key_name)
    tid = _tid(key_name, issued_at)
    if isinstance(kind, CreditKind):
        token, token_class = encode_credit_token(kind, value, tid, 5, key), 0
    else:
        token, token_class = encode_management_token(kind, value, tid, 5, key), 2
    assert token == published, case
    decoded = decode_token(published, key)
    assert (decoded.token_class, decoded.subclass, decoded.random, decoded.tid) == (token_class, kind, 5, tid)
    assert (decoded.field if kind is CLEAR else decode_amount(decoded.field)) == value


@pytest.mark.parametrize(
    ("requested", "carried"),
    [(20000, 20004), (180223, 180224), (1818623, 1818624), (163830, 163834), (163840, 163844),
     (1802240, 1802324), (18186240, 18186624), (1822620, 1822624), (1822640, 1823624), (1820240, 1820624),
     (16738, 16744), (176543, 176544), (188240, 188324), (1826240, 1826624), (182040, 182124), (426240, 426324),
     (1820440, 1820624), (178140, 178144), (1203450, 1203524), (104490, 104494), (124490, 124494),
     (802240, 802324), (1204140, 1204224)],
)  # fmt: skip
def test_inexact_amounts_are_published_as_the_next_amount_up(requested: int, carried: int) -> None:
    """CTSA10/12/13/21/22 ask for amounts (0.1 kWh, W) the exponent and mantissa cannot carry exactly; the
    published tokens carry the smallest amount at or above the request, which our codec issues when asked for it
    (it refuses the inexact request rather than round on its own)."""
    assert decode_amount(encode_amount(carried)) == carried
    assert largest_amount_at_most(carried - 1) < requested <= carried


# CTSA19 (DKGA02, STA): a key change pair to a key with new parameters, then a credit token (0.1 kWh, random 5,
# 2002-04-01) under the key the meter now has. (KRN, TI, KEN, SGC, vending key, minute, first, second, credit)
CTSA19 = [
    (1, "02", 85, "123456", VUDK_64, "10:05", "31337250623187821174", "25365690080149305690", "40823728429161791369"),
    (2, "01", 85, "123456", VUDK_64, "10:10", "44144630105464684572", "31162823148845145254", "07731698895042112630"),
    (2, "01", 255, "123456", VUDK_64, "10:15", "27767097093580610394", "37287781995519266010", "02838142732283753296"),
    (1, "01", 85, "888888", bytes.fromhex("9494949494949494"), "10:20",
     "54413905164151863438", "70335822849409372395", "17352963892501043261"),
]  # fmt: skip


@pytest.mark.parametrize(("krn", "ti", "ken", "sgc", "vudk", "minute", "first", "second", "credit"), CTSA19)
def test_ctsa19_key_change_pairs_and_the_credit_after_them(
    krn: int, ti: str, ken: int, sgc: str, vudk: bytes, minute: str, first: str, second: str, credit: str
) -> None:
    key = decoder_key_dkga02(vudk, replace(PAN_A, supply_group_code=sgc, tariff_index=ti, key_revision=krn))
    change = KeyChange(new_key=key, key_revision=krn, key_type=2, tariff_index=int(ti), key_expiry=ken)
    assert encode_key_change_tokens(key, change) == (first, second)
    assert combine_key_change(*(read_key_change(decode_token(t, key)) for t in (first, second))) == change
    tid = token_identifier(_at(f"2002-04-01 {minute}"))
    assert encode_credit_token(ELECTRICITY, 1, tid, 5, key) == credit
    meter, _ = enter_token(StsMeterState(decoder_key=key), credit)
    assert meter.credit() == 1


# CTSA19-04 (DKGA04, MISTY1): the four-token set from the current key (KRN) to a new one (KRN, SGC, TI, KEN),
# then a credit token (0.1 kWh, random 5, 2004-04-01) under the new key. Step 1's set is also CTSA05-04's.
CTSA19_04 = [
    (1, 1, 123457, 2, 255, "10:00",
     "34812744915211133004 46903925208523674737 71464563847088610152 67904239402617643990", "52522044994700766563"),
    (1, 2, 123457, 1, 255, "10:10",
     "40937788669556693706 55900126766830063715 70168064023104948668 31051353433275215300", "10334212364124071208"),
    (2, 7, 123457, 1, 170, "10:15",
     "65626097193581652906 45273086784967754458 60343449063848563711 62570694794795906368", "06390659512322397973"),
    (1, 1, 123461, 1, 255, "10:20",
     "14459740122691785207 16084994560056931733 38603700611597183668 07926972461094669048", "22571219105476013350"),
]  # fmt: skip


@pytest.mark.parametrize(("current_krn", "krn", "sgc", "ti", "ken", "minute", "tokens", "credit"), CTSA19_04)
def test_ctsa19_04_misty1_key_change_sets_and_the_credit_under_the_new_key(
    current_krn: int, krn: int, sgc: int, ti: int, ken: int, minute: str, tokens: str, credit: str
) -> None:
    current = decoder_key_dkga04(VUDK_160, replace(DKGA04_A, key_revision=current_krn), base_date=BASE_DATE_1993)
    new_meter = replace(DKGA04_A, key_revision=krn, supply_group_code=str(sgc), tariff_index=f"{ti:02d}")
    new = decoder_key_dkga04(VUDK_160, new_meter, base_date=BASE_DATE_1993)
    change = KeyChange(new, key_revision=krn, key_type=2, tariff_index=ti, key_expiry=ken, supply_group_code=sgc)
    assert encode_key_change_set(current, change) == tuple(tokens.split())
    assert combine_key_change(*(read_key_change(decode_token(t, current)) for t in tokens.split())) == change
    tid = token_identifier(_at(f"2004-04-01 {minute}"))
    assert encode_credit_token(ELECTRICITY, 1, tid, 5, new) == credit
    meter = StsMeterState(decoder_key=current, supply_group_code=123457)
    for token in (*tokens.split(), credit):
        meter, _ = enter_token(meter, token)
    assert (meter.decoder_key, meter.supply_group_code, meter.credit()) == (new, sgc, 1)


@pytest.mark.parametrize(
    ("iin", "drn", "first", "second"),
    [
        ("600727", "00000000000", "44163577485799480640", "26556810679164981397"),
        ("000001", "00000000008", "09658886361133612086", "22434017728466234784"),
    ],
)
def test_ctsa26_the_rollover_pair_from_base_date_2014_to_2035(iin: str, drn: str, first: str, second: str) -> None:
    """DKGA04 keys for STA: the current one on base date 2014 with KRN 4, the new one on 2035 with KRN 5;
    the first section sets the rollover bit."""
    meter = replace(DKGA04_A, iin=iin, drn=drn)
    current = decoder_key_dkga04(VUDK_160, replace(meter, key_revision=4), base_date=BASE_DATE_2014, key_bits=64)
    new = decoder_key_dkga04(VUDK_160, replace(meter, key_revision=5), base_date=BASE_DATE_2035, key_bits=64)
    change = KeyChange(new, key_revision=5, key_type=2, tariff_index=1, key_expiry=255, rollover=True)
    assert encode_key_change_tokens(current, change) == (first, second)
    assert combine_key_change(*(read_key_change(decode_token(t, current)) for t in (first, second))) == change


# Class 1 (initiate meter test / display), not encrypted: (control, four-digit manufacturer code?, token).
# CTSA02: every control bit, manufacturer code 00 / 0000. CTSA11: one control bit at a time, both layouts.
_CTSA11 = [  # (control bit, token with the two-digit code, token with the four-digit code)
    (0x1, "00000000000150997584", "01152921509036054672"),
    (0x2, "00000000000167774880", "01152921513331042448"),
    (0x4, "00000000000201328896", "01152921521920952465"),
    (0x8, "18446744073843772416", "01152921539100838034"),
    (0x10, "36893488147553322496", "01152921573460543637"),
    (0x20, "00000000000671093248", "01152921642180020378"),
    (0x40, "00000000001207974400", "01152921779618973828"),
    (0x80, "00000000002281728512", "01152922054496880824"),
    (0x100, "00000000004429208064", "01152922604252694700"),
    (0x200, "00000000008724195840", "01152923703764322536"),
    (0x400, "00000000017314105857", "01152925902787577952"),
    (0x2000, "00000000137573173770", "01152956689113154192"),
    (0x4000, "00000000275012127252", "01152991873485249680"),
    (0x8000, "00000000549890034216", "01153062242229428368"),
    (0x10000, "00000001099645848124", "01153202979717788816"),
    (0x20000, "00000002199157475960", "01153484454694514832"),
]
CLASS_1 = [
    ("CTSA02 step 1", (1 << 36) - 1, False, "56493153725450313471"),
    ("CTSA02 step 2", (1 << 28) - 1, True, "02305843005052951967"),
    *((f"CTSA11 {bit:#x} two-digit", bit, False, two) for bit, two, _ in _CTSA11),
    *((f"CTSA11 {bit:#x} four-digit", bit, True, four) for bit, _, four in _CTSA11),
]


@pytest.mark.parametrize(("case", "control", "four_digit", "published"), CLASS_1)
def test_class_1_test_tokens_are_the_published_numbers_both_ways(
    case: str, control: int, four_digit: bool, published: str
) -> None:
    assert encode_meter_test_token(control, 0, four_digit_manufacturer=four_digit) == published, case
    decoded = decode_token(published, _key("sta"))  # any meter reads a test token: it is not encrypted
    code_bits = 16 if four_digit else 8
    assert (decoded.token_class, decoded.subclass) == (1, int(four_digit))
    assert (decoded.payload >> code_bits, decoded.payload & ((1 << code_bits) - 1)) == (control, 0)


def test_the_reference_meter_reads_a_power_limit_above_16383_w() -> None:
    """CTSA12 step 4: 20004 W travels as exponent 1, mantissa 362; the meter takes it as 20004 W, not the raw field."""
    key = _key("sta")
    meter, _ = enter_token(StsMeterState(decoder_key=key), "49240429350369491663")
    assert meter.maximum_power_w == 20004


def test_ctsa16_a_meter_refuses_a_token_issued_past_its_key_expiry_number() -> None:
    """CTSA16 (no token number: the case is a refusal): with key expiry number 85, a token whose TID's top 8 bits
    are above 85 (here 1 April 2004, 90) is refused as expired; one from before the expiry is taken."""
    key = _key("sta")
    meter = StsMeterState(decoder_key=key, key_expiry=85)
    late = token_identifier(_at("2004-04-01 09:30"))
    assert late >> 16 == 90
    assert enter_token(meter, encode_credit_token(ELECTRICITY, 1, late, 5, key))[1].outcome is Outcome.EXPIRED
    early = token_identifier(_at("2003-06-01 09:30"))
    assert early >> 16 <= 85
    assert enter_token(meter, encode_credit_token(ELECTRICITY, 1, early, 5, key))[1].outcome is Outcome.ACCEPTED


def test_ctsa17_a_meter_number_of_the_wrong_length_gets_no_decoder_key() -> None:
    """CTSA17 (no token number: the case is a refusal): the 22-digit PAN 1234567890411111111113 is no MeterPAN
    (an IIN and an 11- or 13-digit DRN, and the check digit), so neither key generation takes it."""
    wrong = replace(PAN_A, iin="123456", drn="789041111111111")  # 6 + 15 digits before the check digit
    with pytest.raises(StsError):
        decoder_key_dkga02(VUDK_64, wrong)
    with pytest.raises(StsError):
        decoder_key_dkga04(VUDK_160, wrong, base_date=BASE_DATE_1993)


def test_ctsa24_07_an_extended_class_2_token_decodes_under_the_meter_key() -> None:
    """STS 531-1-07 CTSA24 (STS 202-5, class 2 subclass 10: index 63, flag index 0, flag value 0): this codec does
    not issue that subclass; the published number decodes, CRC and all, to those fields."""
    decoded = decode_token("29530401262548563889", _key("sta-07"))
    assert (decoded.token_class, decoded.subclass, decoded.random) == (2, 10, 5)
    assert decoded.tid == _tid("sta-07", "2029-01-01 09:00")
    assert decoded.field == 63 << 10  # index 63 in the top 6 bits, flag index and flag value 0
