// Prints the tokens of Lucene's analyzers, one input line -> one output line (our own tool, for parity checks).
// Build:  javac -cp "$LUCENE_JARS" -d BUILD_DIR AnalyzerDump.java
// Run:    java -cp "$LUCENE_JARS:BUILD_DIR" AnalyzerDump NAME [--detail] < in.txt > out.tsv
// NAME: nori, nori_adv, standard, english, russian.
// Output: terms separated by a TAB; with --detail each term is term/start/end/posInc/type.
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.*;
import org.apache.lucene.analysis.*;
import org.apache.lucene.analysis.en.EnglishAnalyzer;
import org.apache.lucene.analysis.ko.*;
import org.apache.lucene.analysis.ko.tokenattributes.PartOfSpeechAttribute;
import org.apache.lucene.analysis.ru.RussianAnalyzer;
import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.apache.lucene.analysis.tokenattributes.*;

public class AnalyzerDump {
  static Analyzer build(String name) {
    switch (name) {
      case "nori":
      case "nori_adv":
        Set<POS.Tag> stop = new HashSet<>(KoreanPartOfSpeechStopFilter.DEFAULT_STOP_TAGS);
        if (name.equals("nori_adv")) { stop.remove(POS.Tag.MAG); stop.remove(POS.Tag.MAJ); }
        return new KoreanAnalyzer(null, KoreanTokenizer.DecompoundMode.DISCARD, stop, false);
      case "standard": return new StandardAnalyzer(CharArraySet.EMPTY_SET);
      case "english": return new EnglishAnalyzer();
      case "russian": return new RussianAnalyzer();
      default: throw new IllegalArgumentException("unknown analyzer " + name);
    }
  }

  public static void main(String[] args) throws IOException {
    Analyzer analyzer = build(args[0]);
    boolean detail = Arrays.asList(args).contains("--detail");
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, "UTF-8");
    String line;
    while ((line = in.readLine()) != null) {
      StringBuilder sb = new StringBuilder();
      try (TokenStream ts = analyzer.tokenStream("f", line)) {
        CharTermAttribute term = ts.addAttribute(CharTermAttribute.class);
        OffsetAttribute off = ts.addAttribute(OffsetAttribute.class);
        PositionIncrementAttribute inc = ts.addAttribute(PositionIncrementAttribute.class);
        TypeAttribute type = ts.addAttribute(TypeAttribute.class);
        ts.reset();
        while (ts.incrementToken()) {
          if (sb.length() > 0) sb.append('\t');
          sb.append(term.toString());
          if (detail) {
            String t = type.type();
            if (ts.hasAttribute(PartOfSpeechAttribute.class)) {
              t = String.valueOf(ts.getAttribute(PartOfSpeechAttribute.class).getLeftPOS());
            }
            sb.append('/').append(off.startOffset()).append('/').append(off.endOffset())
              .append('/').append(inc.getPositionIncrement()).append('/').append(t);
          }
        }
        ts.end();
      }
      out.println(sb);
    }
    out.flush();
  }
}
