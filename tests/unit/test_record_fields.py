"""Intake fields from what customers write, in Chinese and English, labelled or not."""

from __future__ import annotations

from parsers.record_fields import (
    PROBLEM_MAX_CHARS,
    RecordFields,
    classify_fault,
    extract_record_fields,
)
from workflow.fault_types import DEFAULT_FAULT_TYPES

MODELS = ("HT-8200", "HT-9000", "HT-9000 Pro", "LX-3000")

CHINESE_EMAIL = """王经理您好：

我司一台贵公司生产的喷码机出现故障，具体情况如下：
公司名称：苏州恒通包装有限公司
部门：设备科
联系人：李明
型号：HT-8200，序列号：HT82-2023-0457，联系电话：０５１２－６５２３ ４５６７
订单编号：13800138000
故障描述：开机后面板报错，显示错误代码 E-102，无法继续打印。
客户要求：请尽快安排工程师上门维修，本周五前恢复生产。

谢谢！
"""

ENGLISH_EMAIL = """Hello,

Our ht-9000 printer on the packaging line stopped printing this morning.
The display shows error code E-45 and the error comes back after every restart.
Please call me back on +86 139 1234 5678 or at my desk, 021-6888 8888.

Best regards,
John Smith
"""


def _extract(text: str, subject: str = "", from_name: str = "") -> RecordFields:
    return extract_record_fields(
        subject, text, from_name=from_name, known_models=MODELS, fault_types=DEFAULT_FAULT_TYPES
    )


def test_a_labelled_chinese_email_fills_the_intake_record() -> None:
    fields = _extract(CHINESE_EMAIL, "喷码机报错 E-102", from_name="Li Ming")
    assert fields.company == "苏州恒通包装有限公司"
    assert fields.department == "设备科"
    assert fields.requester_name == "李明"  # the label beats the mail's display name
    assert fields.machine_model == "HT-8200"
    assert fields.serial == "HT82-2023-0457"
    assert fields.phone == "+8651265234567"  # full-width digits, area code kept
    assert fields.fault_type == "error_code"
    assert fields.request == "请尽快安排工程师上门维修，本周五前恢复生产。"
    assert fields.problem == CHINESE_EMAIL.strip()


def test_an_order_number_that_looks_like_a_mobile_is_not_the_phone() -> None:
    fields = _extract("订单编号：13800138000\n打印机不开机")
    assert fields.phone is None
    assert fields.serial is None  # "编号：" inside "订单编号：" is not the serial label


def test_an_unlabelled_english_email_still_yields_phone_model_and_name() -> None:
    fields = _extract(ENGLISH_EMAIL, "Printer down", from_name="John Smith")
    assert fields.phone == "+8613912345678"  # the first valid number, as E.164
    assert fields.machine_model == "HT-9000"  # the catalogue's spelling
    assert fields.requester_name == "John Smith"
    assert fields.fault_type == "error_code"
    assert fields.company is None and fields.serial is None and fields.request is None


def test_labelled_english_fields() -> None:
    text = (
        "Company Name: Acme Packaging Ltd.\nContact person: Mary Jones\n"
        "Phone No.: (021) 6888-8888\nPrinter model: LX-3000\nS/N: LX3-00981\n"
        "Request: replace the print head under warranty\n\nThe prints are blurry and streaky."
    )
    fields = _extract(text)
    assert fields.company == "Acme Packaging Ltd."
    assert fields.requester_name == "Mary Jones"
    assert fields.phone == "+862168888888"
    assert fields.machine_model == "LX-3000"
    assert fields.serial == "LX3-00981"
    assert fields.request == "replace the print head under warranty"
    assert fields.fault_type == "print_quality"


def test_traditional_chinese_labels() -> None:
    text = "聯絡人：陳大文\n機型：LX-3000\n序號：TW-5566\n聯絡電話：0912 345 678"
    fields = extract_record_fields("", text, region="TW")
    assert fields.requester_name == "陳大文"
    assert fields.machine_model == "LX-3000"
    assert fields.serial == "TW-5566"
    assert fields.phone == "+886912345678"


def test_an_invalid_labelled_phone_is_rejected_for_a_valid_one_in_the_text() -> None:
    fields = _extract("电话：12345\n有事请打 138 0013 8000")
    assert fields.phone == "+8613800138000"


def test_invalid_numbers_are_never_taken_for_a_phone() -> None:
    fields = _extract("电话：1380013800\n报错代码 20240101，机器编号 5566")
    assert fields.phone is None


def test_a_number_after_the_contact_name_is_not_part_of_the_name() -> None:
    fields = _extract("联系人：王强 138 0013 8000\n打印机卡纸")
    assert fields.requester_name == "王强"
    assert fields.phone == "+8613800138000"


def test_a_value_on_the_line_below_its_label_is_read() -> None:
    fields = _extract("型号：\nＬＸ－３０００\n序列号：无")
    assert fields.machine_model == "LX-3000"
    assert fields.serial is None  # "无" means the customer does not know


def test_a_model_label_inside_a_sentence_is_read() -> None:
    fields = extract_record_fields("", "我们的打印机型号：XP-77（去年买的），一直报警")
    assert fields.machine_model == "XP-77"  # the remark after it is not part of the model


def test_known_models_are_word_bounded_and_the_longest_wins() -> None:
    assert _extract("我司HT-9000 Pro打印机不出墨").machine_model == "HT-9000 Pro"
    assert _extract("part AHT-82001 arrived").machine_model is None
    assert _extract("", subject="[SL-000042] lx-3000 jam").machine_model == "LX-3000"


def test_display_name_that_is_an_address_is_not_a_name() -> None:
    assert _extract("hello", from_name="alice@example.com").requester_name is None
    assert _extract("hello", from_name=' "Alice Wang" ').requester_name == "Alice Wang"
    assert _extract("hello").requester_name is None


def test_fault_type_is_the_type_mentioned_most() -> None:
    text = "机器卡纸，清理后又卡纸，面板报错"
    assert _extract(text).fault_type == "paper_jam"


def test_fault_type_ties_go_to_the_first_type_of_the_taxonomy() -> None:
    taxonomy = {"paper_jam": ("卡纸",), "error_code": ("报错",)}
    assert classify_fault("卡纸 报错", taxonomy) == "paper_jam"
    assert classify_fault("卡纸 报错", dict(reversed(taxonomy.items()))) == "error_code"


def test_english_keywords_match_whole_words_only() -> None:
    # "printing" contains "ink", "think" too; neither is about consumables.
    assert _extract("I think the printing is fine now").fault_type is None
    assert _extract("We ran out of ink cartridges").fault_type == "consumables"


def test_no_keywords_means_no_fault_type() -> None:
    assert _extract("请问发票什么时候寄出？").fault_type is None
    assert extract_record_fields("打印机卡纸", "卡纸").fault_type is None  # no taxonomy given


def test_problem_is_the_trimmed_text_capped_at_2000_characters() -> None:
    assert _extract("\n\n  打印机不开机。 \n").problem == "打印机不开机。"
    long = _extract("卡" * 5000).problem
    assert len(long) == PROBLEM_MAX_CHARS
    assert long.endswith("…")


def test_an_empty_body_takes_the_subject_as_the_problem() -> None:
    assert _extract("  ", subject="HT-8200 不开机").problem == "HT-8200 不开机"


def test_sms_text_without_subject() -> None:
    fields = _extract("HT-8200卡纸，在线等，电话13800138000 李工")
    assert fields.machine_model == "HT-8200"
    assert fields.phone == "+8613800138000"
    assert fields.fault_type == "paper_jam"


def test_a_labelled_model_ends_where_chinese_prose_starts() -> None:
    fields = extract_record_fields("", "型号：XP-3000 打印机不开机，请尽快处理")
    assert fields.machine_model == "XP-3000"
    assert (
        extract_record_fields("", "Model: LaserJet Pro M404\n").machine_model == "LaserJet Pro M404"
    )
