"""The field catalog: every profile field and derived field a policy rule may name.

One table serves the profile model's error messages, the rule validator (which fields
exist, which operators and values fit them), the column encoder of the batch engine and
the Chinese explanations. Field *names* are the SPEC §2.1 contract; nothing here is a
policy threshold.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """How a field is stored in a column batch and which operators apply to it."""

    NUMBER = "number"  # float column, NaN = unknown
    CATEGORY = "category"  # small-int codes over a fixed vocabulary, -1 = unknown
    SET = "set"  # bit mask over a fixed vocabulary + a "known" mask
    BOOL = "bool"  # encoded as a two-value category
    TEXT = "text"  # free text: ranking only, never in rules
    DATE = "date"  # ISO date: rules use the derived age instead


ENTITY_TYPES = {
    "enterprise": "企业",
    "individual_business": "个体工商户",
    "farmer_coop": "农民专业合作社",
    "branch": "分支机构",
    "other": "其他",
}
REGIONS = {
    r: r
    for r in (
        "鼓楼区 云龙区 贾汪区 泉山区 铜山区 丰县 沛县 睢宁县 新沂市 邳州市 "
        "徐州经济技术开发区 徐州高新技术产业开发区 徐州淮海国际港务区 市外"
    ).split()
}
SIZES = {"large": "大型", "medium": "中型", "small": "小型", "micro": "微型"}
OWNERSHIPS = {
    "private": "民营",
    "state_owned": "国有",
    "foreign": "外资",
    "collective": "集体",
    "other": "其他",
}
LISTING_STATUSES = {
    "unlisted": "未上市",
    "reserve": "上市后备库企业",
    "neeq": "新三板挂牌",
    "listed": "已上市",
}
TAX_CREDIT_GRADES = {"A": "A级", "B": "B级", "M": "M级", "C": "C级", "D": "D级"}
TAXPAYER_TYPES = {"general": "一般纳税人", "small_scale": "小规模纳税人"}
VAT_FILING_PERIODS = {"monthly": "按月申报", "quarterly": "按季申报"}
QUALIFICATIONS = {
    "high_tech": "高新技术企业",
    "tech_sme": "科技型中小企业",
    "specialized_sme": "专精特新中小企业",
    "little_giant": "专精特新“小巨人”企业",
    "single_champion": "制造业单项冠军",
    "tech_center": "省级以上企业技术中心",
    "postdoc_station": "博士后工作站",
    "skill_master_studio": "技能大师工作室",
}
TRADE = {
    "importer": "进口企业",
    "exporter": "出口企业",
    "cross_border_ecommerce": "跨境电商",
    "rail_freight": "铁路货运（中欧班列等）",
}
FLAGS = {
    "abnormal_operation": "列入经营异常名录",
    "administrative_penalty": "有行政处罚记录",
    "seriously_dishonest": "列入严重失信名单",
    "bankruptcy": "处于破产程序中",
    "in_difficulty": "生产经营困难",
    "labor_dispute": "存在劳动争议",
    "unpaid_receivables": "被拖欠账款",
    "criminal_case": "涉案企业",
}
BOOLS = {"true": "是", "false": "否"}


@dataclass(frozen=True)
class Field:
    """One field: its name (the contract), kind, Chinese label, unit and vocabulary."""

    name: str
    kind: Kind
    label: str
    unit: str = ""
    vocabulary: dict[str, str] = field(default_factory=dict)
    derived: bool = False
    help: str = ""
    #: Can a firm change this by its own action (grade, listing, qualifications, size …)? A
    #: near miss on a field that is not actionable (industry, region, age, entity type) is no
    #: gap worth showing.
    actionable: bool = False
    #: For ordered categories, best first (A级 … D级; 已上市 … 未上市). A failed condition is a gap
    #: to close only if it allows a value better than the firm's current one.
    order: tuple[str, ...] = ()
    #: For a yes/no field, how a sentence states it (默认 属于…/不属于…: 属于中小微企业).
    yes: str = ""
    no: str = ""

    def says(self, value: bool) -> str:
        """A yes/no field as a statement about the firm: ``已建立工会`` / ``不属于中小微企业``."""
        stem = self.label.removeprefix("是否")
        if value:
            return self.yes or f"属于{stem}"
        return self.no or f"不属于{stem}"

    def value_label(self, value: object) -> str:
        """Chinese rendering of one value of this field, e.g. ``small`` → ``小型``."""
        if value is None:
            return "未知"
        if isinstance(value, bool):
            return "是" if value else "否"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.vocabulary:
            return self.vocabulary.get(str(value), str(value))
        return f"{value}{self.unit}"


def _fields() -> dict[str, Field]:
    F, K = Field, Kind
    items = [
        F("uscc", K.TEXT, "统一社会信用代码", help="营业执照左上方的18位代码；也可在国家企业信用信息公示系统按企业名称查到"),
        F("name", K.TEXT, "企业名称", help="与营业执照一致的全称"),
        F("entity_type", K.CATEGORY, "市场主体类型", vocabulary=ENTITY_TYPES,
          help="见营业执照“类型”栏：公司等企业、个体工商户、农民专业合作社或分公司等分支机构；不填按企业计"),
        F("region", K.CATEGORY, "所在地区", vocabulary=REGIONS,
          help="注册地所在的县（市、区）或功能区；注册在徐州以外选“市外”"),
        F("industry_code", K.TEXT, "行业代码（GB/T 4754-2017）",
          help="国民经济行业分类代码，如 C3484（齿轮制造）、I65（软件和信息技术服务）；见统计年报或“一套表”，"
          "不清楚时至少填门类字母（如 C 制造业、F 批发零售、E 建筑业）"),
        F("established_on", K.DATE, "成立日期", help="营业执照上的“成立日期”"),
        F("employees", K.NUMBER, "从业人员", "人", actionable=True,
          help="上年末从业人员数（含劳务派遣），可参考社保缴费人数"),
        F("annual_revenue_wan", K.NUMBER, "营业收入", "万元", actionable=True,
          help="上一年度营业收入，见利润表或企业所得税年度申报表；单位万元"),
        F("total_assets_wan", K.NUMBER, "资产总额", "万元", actionable=True,
          help="上年末资产总额，见资产负债表；单位万元"),
        F("size", K.CATEGORY, "企业规模", vocabulary=SIZES,
          help="填报时可不填，系统按《中小企业划型标准规定》自动划型", actionable=True),
        F("ownership", K.CATEGORY, "所有制类型", vocabulary=OWNERSHIPS, help="按出资人性质；不填按民营计"),
        F("listing_status", K.CATEGORY, "上市状态", vocabulary=LISTING_STATUSES, actionable=True,
          help="已在证券交易所上市、在新三板挂牌，或已入选徐州市上市后备企业库",
          order=("listed", "neeq", "reserve", "unlisted")),
        F("tax_credit_grade", K.CATEGORY, "纳税信用等级", vocabulary=TAX_CREDIT_GRADES,
          help="可在电子税务局“纳税信用”栏目查询，每年4月发布上一年度评价结果", actionable=True,
          order=("A", "B", "M", "C", "D")),
        F("taxpayer_type", K.CATEGORY, "纳税人类型", vocabulary=TAXPAYER_TYPES, actionable=True,
          help="增值税纳税人身份，可在电子税务局“纳税人信息”中查看"),
        F("monthly_sales_wan", K.NUMBER, "月销售额", "万元", actionable=True,
          help="近期平均每月的销售额（增值税申报口径）；单位万元"),
        F("vat_filing_period", K.CATEGORY, "增值税申报期", vocabulary=VAT_FILING_PERIODS,
          help="小规模纳税人按月还是按季申报增值税，见电子税务局“税费种认定信息”；按季申报的免税标准为季度销售额30万元"),
        F("taxable_income_wan", K.NUMBER, "年应纳税所得额", "万元",
          help="上一年度企业所得税年度申报表（A100000）第23行“应纳税所得额”，个体工商户为经营所得应纳税所得额；"
          "亏损填0；用于估算所得税优惠，单位万元"),
        F("rd_expense_wan", K.NUMBER, "上年研发费用", "万元", actionable=True,
          help="上一年度发生的研发费用（研发支出辅助账或年度申报表A107012的“允许加计扣除的研发费用”）；单位万元"),
        F("annual_payroll_wan", K.NUMBER, "年工资总额", "万元",
          help="上一年度全部职工工资总额；用于估算工会经费返还等金额，单位万元"),
        F("unemployment_insurance_paid_wan", K.NUMBER, "上年实际缴纳失业保险费", "万元",
          help="上一年度企业及其职工实际缴纳的失业保险费合计（社保缴费记录或电子税务局社保费缴费明细）；"
          "用于估算稳岗返还，单位万元"),
        F("layoff_rate_pct", K.NUMBER, "上年裁员率", "%",
          help="上一年度裁减人数占上年末参保职工总数的百分比（未裁员填0），如 3.2 表示3.2%；稳岗返还以此为条件"),
        F("disabled_employees", K.NUMBER, "安排残疾人就业人数", "人",
          help="上一年度实际安排就业、持有残疾人证或残疾军人证的职工人数（按月平均计算）；用于估算残疾人就业保障金"),
        F("deductible_input_vat_wan", K.NUMBER, "当年可抵扣进项税额", "万元",
          help="一般纳税人本年度可抵扣的进项税额合计（增值税申报表附列资料二）；用于估算先进制造业加计抵减，单位万元"),
        F("has_union", K.BOOL, "是否建立工会", vocabulary=BOOLS, yes="已建立工会", no="未建立工会",
          help="企业是否已建立工会组织（工会经费返还返到企业工会账户，未建工会的企业没有可返还的部分）"),
        F("financing_need_wan", K.NUMBER, "融资需求", "万元",
          help="计划申请的贷款金额；用于估算贴息、担保费减免等金额，单位万元"),
        F("qualifications", K.SET, "企业资质", vocabulary=QUALIFICATIONS, actionable=True,
          help="勾选已获认定且在有效期内的资质（以证书或公示名单为准）；都没有请勾选“以上均无”"),
        F("trade", K.SET, "外贸业务", vocabulary=TRADE, help="勾选企业实际开展的业务；都没有请勾选“以上均无”"),
        F("patents", K.NUMBER, "有效发明专利", "件", actionable=True,
          help="仍有效的发明专利件数（不含实用新型和外观设计），可在国家知识产权局专利检索系统查询"),
        F("trademarks", K.NUMBER, "注册商标", "件", actionable=True, help="有效的注册商标件数"),
        F("flags", K.SET, "经营与信用状况", vocabulary=FLAGS, actionable=True,
          help="如实勾选目前存在的情况（可在“信用中国”或国家企业信用信息公示系统查询）；都没有请勾选“以上均无”"),
        F("business_scope", K.TEXT, "经营范围", help="营业执照上的“经营范围”，可只填主要业务"),
        F("needs", K.TEXT, "企业诉求", help="用自己的话说想解决什么问题，如“想贷款扩大生产”“工会经费能退吗”“准备注销”"),
        # Derived fields (企业画像): computed from the fields above, never stated.
        F("is_sme", K.BOOL, "是否中小微企业", vocabulary=BOOLS, derived=True, actionable=True),
        F("industry_section", K.CATEGORY, "行业门类", derived=True),
        F("industry_division", K.CATEGORY, "行业大类", derived=True),
        F("industry_group", K.CATEGORY, "行业中类", derived=True),
        F("size_category", K.CATEGORY, "划型行业类别", derived=True),
        F("age_years", K.NUMBER, "成立年限", "年", derived=True),
    ]
    return {f.name: f for f in items}


FIELDS: dict[str, Field] = _fields()

#: Fields the profile model accepts (SPEC §2.1), in contract order.
PROFILE_FIELDS: tuple[str, ...] = tuple(n for n, f in FIELDS.items() if not f.derived)
#: Fields a rule may compare (text and dates are not comparable; dates via ``age_years``).
RULE_FIELDS: tuple[str, ...] = tuple(
    n for n, f in FIELDS.items() if f.kind not in (Kind.TEXT, Kind.DATE)
)


def suggest(name: str, candidates: Iterable[object]) -> str:
    """``" — did you mean 'x'?"`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" — did you mean '{close[0]}'?" if close else ""
